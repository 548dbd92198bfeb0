//! Where the door's frames come from: a V4L2 camera, or a replay of image
//! files for tests and demos, behind one trait ([`FrameSource`]). The
//! hardware edge of the data flow: camera → detect → align → embed → …
#![warn(missing_docs)]

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a frame could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// One frame was damaged; the stream goes on.
    #[error("frame {index}: {why}")]
    BadFrame {
        /// Frame number.
        index: u64,
        /// What was wrong.
        why: String,
    },
    /// The camera is gone or failed; the caller retries with back-off.
    #[error("camera: {0}")]
    Camera(String),
    /// The source cannot be opened (no such directory or list, no files, no
    /// camera support on this system).
    #[error("{0}")]
    Open(String),
    /// No frame came for `for_ms` (a [`Watched`] source): the camera hangs
    /// without failing. Said every poll while it lasts, so the caller's loop
    /// goes round (ends unlock pulses, reads the exit button).
    #[error("no frame for {for_ms} ms (the camera stalled)")]
    Stalled {
        /// How long since the last frame (or since the wait began).
        for_ms: u64,
    },
}

/// Which source to open, as given on the command line: `replay:DIR` (or
/// `replay:LIST`), or a V4L2 device path such as `/dev/video0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Image files played back.
    Replay(PathBuf),
    /// A V4L2 camera.
    Camera(String),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("replay:") {
            Some("") => Err("replay: needs a directory or a list file, e.g. replay:frames/".into()),
            Some(path) => Ok(SourceSpec::Replay(PathBuf::from(path))),
            None if s.is_empty() => Err("give replay:DIR or a camera such as /dev/video0".into()),
            None => Ok(SourceSpec::Camera(s.to_string())),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Replay(p) => write!(f, "replay:{}", p.display()),
            SourceSpec::Camera(c) => f.write_str(c),
        }
    }
}

/// Opens a source: replays at `fps` (over and over with `repeat`), cameras at `width`×`height`.
pub fn open_source(
    spec: &SourceSpec,
    fps: u32,
    width: u32,
    height: u32,
    repeat: bool,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match spec {
        SourceSpec::Replay(path) => {
            let mut replay = ReplaySource::open(path, fps)?;
            replay.repeat = repeat;
            Ok(Box::new(replay))
        }
        #[cfg(target_os = "linux")]
        SourceSpec::Camera(path) => Ok(Box::new(v4l2::ReopeningCamera::open(path, width, height)?)),
        #[cfg(not(target_os = "linux"))]
        SourceSpec::Camera(_) => {
            let _ = (width, height);
            Err(SourceError::Open("camera sources need Linux (V4L2); use replay:DIR".into()))
        }
    }
}

/// A stream of RGB frames.
pub trait FrameSource: Send {
    /// The next frame; `None` when a finite source (a replay) has ended.
    fn next_frame(&mut self) -> Option<Result<RgbImage, SourceError>>;
    /// Human-readable description for logs.
    fn describe(&self) -> String;
}

/// A source read on its own thread, so a read that hangs (a V4L2 driver
/// that neither delivers nor fails) cannot hold the caller: without a frame
/// within `poll`, [`FrameSource::next_frame`] says [`SourceError::Stalled`]
/// and the caller goes on; the frame, when it comes, is the next one handed over.
pub struct Watched {
    frames: std::sync::mpsc::Receiver<Option<Result<RgbImage, SourceError>>>,
    poll: Duration,
    waiting_since: Option<Instant>,
    ended: bool,
    what: String,
}

impl Watched {
    /// Starts reading `source` on a thread of its own; at most one frame
    /// waits read ahead (the camera's own buffers hold the rest).
    pub fn start(mut source: Box<dyn FrameSource>, poll: Duration) -> Result<Self, SourceError> {
        let what = source.describe();
        let (tx, frames) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || loop {
                // A frame's reading, decoding and handing over come from the
                // frame arena, as on the loop's thread.
                let _scope = facegate_arena::FrameScope::enter();
                let frame = source.next_frame();
                let end = frame.is_none();
                if tx.send(frame).is_err() || end {
                    break;
                }
            })
            .map_err(|e| SourceError::Open(format!("a thread for {what}: {e}")))?;
        Ok(Watched { frames, poll, waiting_since: None, ended: false, what })
    }
}

impl FrameSource for Watched {
    fn next_frame(&mut self) -> Option<Result<RgbImage, SourceError>> {
        use std::sync::mpsc::RecvTimeoutError;
        if self.ended {
            return None;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        match self.frames.recv_timeout(self.poll) {
            Ok(frame) => {
                self.waiting_since = None;
                self.ended = frame.is_none();
                frame
            }
            Err(RecvTimeoutError::Timeout) => Some(Err(SourceError::Stalled { for_ms: since.elapsed().as_millis() as u64 })),
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Some(Err(SourceError::Camera(format!("{}: the reading thread ended", self.what))))
            }
        }
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// Image files played back in name order (or in the order of a list file) at a set rate.
pub struct ReplaySource {
    /// Start again after the last file.
    pub repeat: bool,
    files: Vec<PathBuf>,
    next: usize,
    interval: Option<Duration>,
    last: Option<Instant>,
    what: String,
}

const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "ppm"];

impl ReplaySource {
    /// `path` is a directory of images (sorted by name) or a text file listing one image path per line
    /// (relative paths are relative to the list). `fps` 0 plays as fast as possible.
    pub fn open(path: &Path, fps: u32) -> Result<Self, SourceError> {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| SourceError::Open(format!("replay directory {}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            files.sort();
            files
        } else {
            let base = path.parent().unwrap_or(Path::new("."));
            let text =
                std::fs::read_to_string(path).map_err(|e| SourceError::Open(format!("replay list {}: {e}", path.display())))?;
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| base.join(l)).collect()
        };
        let images = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())))
            .count();
        if images == 0 && files.is_empty() {
            return Err(SourceError::Open(format!("replay source {} holds no files", path.display())));
        }
        let interval = (fps > 0).then(|| Duration::from_secs_f64(1.0 / fps as f64));
        Ok(ReplaySource {
            repeat: false,
            what: format!("replay of {} files from {}", files.len(), path.display()),
            files,
            next: 0,
            interval,
            last: None,
        })
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Option<Result<RgbImage, SourceError>> {
        if self.repeat && self.next >= self.files.len() {
            self.next = 0;
        }
        let file = self.files.get(self.next)?.clone();
        let index = self.next as u64;
        self.next += 1;
        if let (Some(interval), Some(last)) = (self.interval, self.last) {
            if let Some(wait) = interval.checked_sub(last.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        self.last = Some(Instant::now());
        Some(
            std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| decode_image(&bytes, DEFAULT_MAX_PIXELS).map_err(|e| e.to_string()))
                .map_err(|why| SourceError::BadFrame { index, why: format!("{}: {why}", file.display()) }),
        )
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// A V4L2 camera (`/dev/videoN`), MJPEG or YUYV, decoded to RGB.
#[cfg(target_os = "linux")]
pub mod v4l2 {
    use super::{FrameSource, SourceError};
    use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
    use image::RgbImage;
    use v4l::buffer::Type;
    use v4l::io::traits::CaptureStream;
    use v4l::video::Capture;
    use v4l::{Device, FourCC};

    /// A read that waits longer than this fails: the camera is reopened.
    const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

    /// A camera that reopens itself after it disappears (unplugged, driver
    /// reset): each failure is reported, and the next frame tries to reopen.
    pub struct ReopeningCamera {
        path: String,
        width: u32,
        height: u32,
        camera: Option<V4l2Source>,
    }

    impl ReopeningCamera {
        /// Opens the camera now; a failure here is an error (wrong path, no permission).
        pub fn open(path: &str, width: u32, height: u32) -> Result<Self, SourceError> {
            Ok(ReopeningCamera { path: path.to_string(), width, height, camera: Some(V4l2Source::open(path, width, height)?) })
        }
    }

    impl FrameSource for ReopeningCamera {
        fn next_frame(&mut self) -> Option<Result<RgbImage, SourceError>> {
            if self.camera.is_none() {
                match V4l2Source::open(&self.path, self.width, self.height) {
                    Ok(c) => self.camera = Some(c),
                    Err(e) => return Some(Err(e)),
                }
            }
            let frame = self.camera.as_mut()?.next_frame()?;
            if matches!(frame, Err(SourceError::Camera(_))) {
                self.camera = None; // reopen on the next call (the caller backs off)
            }
            Some(frame)
        }

        fn describe(&self) -> String {
            self.camera.as_ref().map_or_else(|| format!("{} (reopening)", self.path), |c| c.describe())
        }
    }

    /// An open camera stream.
    pub struct V4l2Source {
        path: String,
        stream: v4l::io::mmap::Stream<'static>,
        width: u32,
        height: u32,
        mjpeg: bool,
        index: u64,
        // Kept open for the stream's lifetime.
        _device: Device,
    }

    impl V4l2Source {
        /// Opens `path` and negotiates MJPEG (preferred) or YUYV at the requested size.
        pub fn open(path: &str, width: u32, height: u32) -> Result<Self, SourceError> {
            let cam = |e: std::io::Error| SourceError::Camera(format!("{path}: {e}"));
            let device = Device::with_path(path).map_err(cam)?;
            let mut chosen = None;
            for fourcc in [b"MJPG", b"YUYV"] {
                let mut fmt = device.format().map_err(cam)?;
                fmt.width = width;
                fmt.height = height;
                fmt.fourcc = FourCC::new(fourcc);
                let got = device.set_format(&fmt).map_err(cam)?;
                if got.fourcc == FourCC::new(fourcc) {
                    chosen = Some(got);
                    break;
                }
            }
            let fmt = chosen.ok_or_else(|| SourceError::Camera(format!("{path}: offers neither MJPEG nor YUYV")))?;
            let mut stream = v4l::io::mmap::Stream::with_buffers(&device, Type::VideoCapture, 4).map_err(cam)?;
            // A driver that stops delivering fails the read (and the camera is reopened).
            stream.set_timeout(READ_TIMEOUT);
            Ok(V4l2Source {
                path: path.to_string(),
                stream,
                width: fmt.width,
                height: fmt.height,
                mjpeg: fmt.fourcc == FourCC::new(b"MJPG"),
                index: 0,
                _device: device,
            })
        }
    }

    /// YUYV 4:2:2 → RGB (BT.601, studio range).
    pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Option<RgbImage> {
        let need = width as usize * height as usize * 2;
        if data.len() < need || !width.is_multiple_of(2) {
            return None;
        }
        let mut out = Vec::with_capacity(need / 2 * 3);
        let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        for q in data[..need].chunks_exact(4) {
            let (u, v) = (q[1] as f32 - 128.0, q[3] as f32 - 128.0);
            for y in [q[0], q[2]] {
                let c = 1.164 * (y as f32 - 16.0);
                out.extend_from_slice(&[clamp(c + 1.596 * v), clamp(c - 0.392 * u - 0.813 * v), clamp(c + 2.017 * u)]);
            }
        }
        RgbImage::from_raw(width, height, out)
    }

    impl FrameSource for V4l2Source {
        fn next_frame(&mut self) -> Option<Result<RgbImage, SourceError>> {
            let index = self.index;
            self.index += 1;
            let frame = match self.stream.next() {
                Ok((buf, meta)) => {
                    let data = &buf[..(meta.bytesused as usize).min(buf.len())];
                    if self.mjpeg {
                        decode_image(data, DEFAULT_MAX_PIXELS).map_err(|e| SourceError::BadFrame { index, why: e.to_string() })
                    } else {
                        yuyv_to_rgb(data, self.width, self.height)
                            .ok_or_else(|| SourceError::BadFrame { index, why: "short YUYV frame".into() })
                    }
                }
                Err(e) => Err(SourceError::Camera(format!("{}: {e}", self.path))),
            };
            Some(frame)
        }

        fn describe(&self) -> String {
            format!("{} {}×{} {}", self.path, self.width, self.height, if self.mjpeg { "MJPEG" } else { "YUYV" })
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn yuyv_grey_and_short_frames() {
            let grey = [126u8, 128, 126, 128];
            let img = super::yuyv_to_rgb(&grey, 2, 1).unwrap();
            assert!(img.pixels().all(|p| p.0.iter().all(|c| (*c as i32 - 128).abs() <= 2)));
            assert!(super::yuyv_to_rgb(&grey[..2], 2, 1).is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_plays_files_in_name_order_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3])).save(dir.path().join("b.png")).unwrap();
        RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9])).save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("c.jpg"), b"not a jpeg").unwrap();
        let mut src = ReplaySource::open(dir.path(), 0).unwrap();
        assert_eq!(src.next_frame().unwrap().unwrap().width(), 4, "a.png first");
        assert_eq!(src.next_frame().unwrap().unwrap().width(), 8);
        assert!(matches!(src.next_frame(), Some(Err(SourceError::BadFrame { index: 2, .. }))));
        assert!(src.next_frame().is_none(), "ends");
    }

    #[test]
    fn replay_from_a_list_file() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::new(5, 5).save(dir.path().join("x.png")).unwrap();
        std::fs::write(dir.path().join("list.txt"), "# frames\nx.png\nx.png\n").unwrap();
        let mut src = ReplaySource::open(&dir.path().join("list.txt"), 1000).unwrap();
        assert!(src.next_frame().unwrap().is_ok() && src.next_frame().unwrap().is_ok());
        assert!(src.next_frame().is_none());
        assert!(ReplaySource::open(&dir.path().join("missing.txt"), 0).is_err());
    }
}
