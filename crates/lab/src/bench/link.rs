//! `host-tool bench link`: bulk enrolment through the real device program over
//! a pseudo-terminal, paced like a serial line at the given baud rate on both
//! sides (a PTY has no speed of its own). Reports throughput against the
//! line's raw limit (baud / 10 bytes per second for 8N1).

use super::fixtures::{stats_figure, synthetic};
use anyhow::{bail, Context, Result};
use clap::Args;
use facegate_protocol::link::Link;
use facegate_protocol::message::{NewPerson, WireTemplate};
use facegate_protocol::{Client, Request, Response, MAX_FRAME};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `bench link`.
#[derive(Args)]
pub struct LinkArgs {
    /// People to enrol.
    #[arg(long, default_value_t = 1000)]
    people: usize,
    /// Templates per person.
    #[arg(long, default_value_t = 3)]
    templates: usize,
    /// Line rate to emulate.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// The device program (default: `device` next to this program).
    #[arg(long)]
    device: Option<PathBuf>,
    /// A photo with a face for the device's camera to see meanwhile (e.g. an LFW
    /// image): the frame loop then searches the gallery on every frame, and the
    /// longest time it waited for the gallery during the enrolment is reported.
    #[arg(long)]
    face: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub fn run(models: &std::path::Path, args: LinkArgs) -> Result<()> {
    let device = super::fixtures::device_program(args.device)?;
    let dir = tempfile_dir()?;
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames)?;
    match &args.face {
        Some(face) => {
            std::fs::copy(face, frames.join("0.jpg")).with_context(|| format!("reading {}", face.display()))?;
        }
        None => image::RgbImage::new(64, 64).save(frames.join("0.png"))?,
    }
    let mut child = Command::new(&device)
        .args(["run", "--lock", "sim", "--serial", "pty", "--setup", "--log", "none", "--stats", "--replay-loop"])
        .arg("--emulate-baud")
        .arg(args.baud.to_string())
        .arg("--source")
        .arg(format!("replay:{}", frames.display()))
        .arg("--gallery")
        .arg(dir.join("gallery.fg"))
        .arg("--models")
        .arg(models)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", device.display()))?;
    let result = (|| -> Result<serde_json::Value> {
        let stderr = BufReader::new(child.stderr.take().context("stderr")?);
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining the device's messages so it never blocks or fails writing them.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let port = loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).context("the device did not open a pseudo-terminal")?;
            if let Some(p) = line.strip_prefix("serial: ") {
                break p.to_string();
            }
        };
        std::env::set_var("FACEGATE_HOME", dir.join("home"));
        let serial = serialport::new(&port, args.baud)
            .timeout(Duration::from_millis(200))
            .open()
            .with_context(|| format!("opening the device's pseudo-terminal {port}"))?;
        let mut link = Link::new(serial);
        link.emulate_baud(args.baud);
        let mut c = Client::connect(link, facegate_protocol::auth::random_bytes(), Duration::from_secs(30))?;
        c.pair("bench")?;
        let model = c.hello().model;
        let before = c.link_stats();
        let start = Instant::now();
        let (mut enrolled, mut requests, mut payload) = (0usize, 0usize, 0usize);
        let mut next = 0usize;
        while next < args.people {
            // As many people as fit one frame.
            let mut batch = Vec::new();
            let mut size = 64;
            while next < args.people {
                let p = NewPerson {
                    name: format!("person-{next:05}"),
                    templates: (0..args.templates).map(|k| WireTemplate::from_embedding(&synthetic(next, k))).collect(),
                };
                let bytes = facegate_protocol::message::to_bytes(&p).len();
                if size + bytes > MAX_FRAME - 64 && !batch.is_empty() {
                    break;
                }
                size += bytes;
                payload += bytes;
                batch.push(p);
                next += 1;
            }
            let Response::Enrolled(results) = c.call(&Request::Enroll { model, add: false, people: batch })? else {
                bail!("unexpected answer");
            };
            enrolled += results.iter().filter(|r| r.outcome.is_ok()).count();
            requests += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        let stats = c.link_stats();
        let (out, back) = (stats.bytes_out - before.bytes_out, stats.bytes_in - before.bytes_in);
        let limit = args.baud as f64 / 10.0;
        // Stop the device politely: it prints its loop statistics on SIGTERM.
        #[cfg(unix)]
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let mut loop_stats = None;
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
            if line.contains("longest gallery wait") {
                loop_stats = Some(line);
                break;
            }
        }
        let parse = |key: &str, unit: &str| stats_figure(loop_stats.as_deref()?, key, unit);
        Ok(serde_json::json!({
            "people": args.people, "templates_per_person": args.templates, "enrolled": enrolled, "requests": requests,
            "baud": args.baud, "line_limit_bytes_per_s": limit, "seconds": seconds,
            "wire_bytes_to_device": out, "wire_bytes_from_device": back, "payload_bytes": payload,
            "wire_bytes_per_s": out as f64 / seconds, "link_utilisation": out as f64 / seconds / limit,
            "payload_bytes_per_s": payload as f64 / seconds, "payload_share_of_limit": payload as f64 / seconds / limit,
            "device_frames": loop_stats.as_deref().and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok()),
            "device_fps": parse("s =", "fps"),
            "frame_loop_longest_gallery_wait_ms": parse("longest gallery wait", "ms"),
        }))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    super::fixtures::print_figures(&figures, args.json)
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("facegate-bench-link-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
