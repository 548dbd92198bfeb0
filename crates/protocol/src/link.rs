//! Frames over a byte port: a serial port, or a pseudo-terminal in tests.

use crate::frame::{self, Decoder, FrameError};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// A byte port with read time-outs.
pub trait Port: Read + Write + Send {
    /// How long one `read` may wait.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Drops whatever is waiting to be read (stale replies from an earlier session).
    fn discard_input(&mut self) -> io::Result<()>;
}

impl Port for Box<dyn serialport::SerialPort> {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_timeout(timeout).map_err(io::Error::from)
    }
    fn discard_input(&mut self) -> io::Result<()> {
        self.clear(serialport::ClearBuffer::Input).map_err(io::Error::from)
    }
}

#[cfg(unix)]
impl Port for serialport::TTYPort {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        serialport::SerialPort::set_timeout(self, timeout).map_err(io::Error::from)
    }
    fn discard_input(&mut self) -> io::Result<()> {
        // tcflush does not apply to a pseudo-terminal's master side: drain instead.
        let mut buf = [0u8; 512];
        self.set_read_timeout(Duration::from_millis(1))?;
        while matches!(self.read(&mut buf), Ok(n) if n > 0) {}
        Ok(())
    }
}

/// Errors of the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Nothing (complete) arrived in time.
    #[error("no answer in time")]
    TimedOut,
    /// The port went away (cable pulled, device closed the pseudo-terminal).
    #[error("the port closed")]
    Closed,
    /// An I/O error on the port.
    #[error("port error: {0}")]
    Io(#[from] io::Error),
}

/// Byte and frame counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes written, framing included.
    pub bytes_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Good frames read.
    pub frames_in: u64,
    /// Damaged frames read.
    pub bad_frames: u64,
}

/// Frames over a [`Port`].
pub struct Link<P> {
    port: P,
    decoder: Decoder,
    pending: VecDeque<Result<Vec<u8>, FrameError>>,
    /// Emulated line rate in bytes per second (a pseudo-terminal has none).
    line_rate: Option<f64>,
    line_free_at: Instant,
    stats: LinkStats,
}

impl<P: Port> Link<P> {
    /// A link over `port`.
    pub fn new(port: P) -> Self {
        Link {
            port,
            decoder: Decoder::new(),
            pending: VecDeque::new(),
            line_rate: None,
            line_free_at: Instant::now(),
            stats: LinkStats::default(),
        }
    }

    /// Paces writes as a serial line at `baud` (8N1: ten bits a byte) would;
    /// for benchmarks over a pseudo-terminal, which has no speed of its own.
    pub fn emulate_baud(&mut self, baud: u32) {
        self.line_rate = (baud > 0).then_some(baud as f64 / 10.0);
    }

    /// The counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The port.
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
    }

    /// Writes raw bytes (also used to send a lone delimiter that flushes the peer's decoder).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        match self.line_rate {
            None => self.port.write_all(bytes)?,
            Some(rate) => {
                for piece in bytes.chunks(64) {
                    let now = Instant::now();
                    self.line_free_at = self.line_free_at.max(now) + Duration::from_secs_f64(piece.len() as f64 / rate);
                    std::thread::sleep(self.line_free_at.saturating_duration_since(now));
                    self.port.write_all(piece)?;
                }
            }
        }
        self.port.flush()?;
        self.stats.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// Sends one frame.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        let mut wire = Vec::with_capacity(payload.len() + payload.len() / 254 + 8);
        frame::encode(payload, &mut wire).map_err(|e| LinkError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        self.write_raw(&wire)?;
        self.stats.frames_out += 1;
        Ok(())
    }

    /// The next frame (or frame error), waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Result<Vec<u8>, FrameError>, LinkError> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1024];
        loop {
            if let Some(f) = self.pending.pop_front() {
                match &f {
                    Ok(_) => self.stats.frames_in += 1,
                    Err(_) => self.stats.bad_frames += 1,
                }
                return Ok(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LinkError::TimedOut);
            }
            self.port.set_read_timeout(left.min(Duration::from_millis(200)))?;
            match self.port.read(&mut buf) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    let pending = &mut self.pending;
                    self.decoder.feed(&buf[..n], |f| pending.push_back(f));
                }
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
    }

    /// Forgets partial input and anything queued.
    pub fn resync(&mut self) -> Result<(), LinkError> {
        self.decoder.reset();
        self.pending.clear();
        self.port.discard_input()?;
        Ok(())
    }
}
