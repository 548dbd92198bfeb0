//! The provisioning link: a serial port (or a pseudo-terminal for tests and
//! demos) served by a thread beside the frame loop.

use crate::provision::DeviceHandler;
use anyhow::{Context, Result};
use facegate_protocol::link::{Link, LinkError, Port};
use facegate_protocol::server::Server;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialSpec {
    /// No provisioning link.
    None,
    /// A new pseudo-terminal; its path is printed on stderr as `serial: /dev/pts/N`.
    Pty,
    /// A serial device.
    Device(String),
}

impl SerialSpec {
    /// Parses `none`, `pty` or a device path.
    pub fn parse(s: &str) -> Self {
        match s {
            "" | "none" => SerialSpec::None,
            "pty" => SerialSpec::Pty,
            path => SerialSpec::Device(path.to_string()),
        }
    }
}

fn serve_on<P: Port>(
    server: &mut Server<DeviceHandler>,
    port: P,
    emulate_baud: Option<u32>,
    stop: &AtomicBool,
) -> Result<(), LinkError> {
    let mut link = Link::new(port);
    if let Some(b) = emulate_baud {
        link.emulate_baud(b);
    }
    server.serve(&mut link, stop)
}

/// Starts the server thread; `emulate_baud` paces replies like a real line (benchmarks over a PTY).
pub fn start(
    spec: SerialSpec,
    baud: u32,
    emulate_baud: Option<u32>,
    mut server: Server<DeviceHandler>,
    stop: Arc<AtomicBool>,
) -> Result<Option<JoinHandle<()>>> {
    match spec {
        SerialSpec::None => Ok(None),
        SerialSpec::Pty => {
            #[cfg(unix)]
            {
                use serialport::SerialPort;
                let (master, slave) = serialport::TTYPort::pair().context("opening a pseudo-terminal")?;
                let path = slave.name().context("pseudo-terminal without a path")?;
                eprintln!("serial: {path}");
                let handle = std::thread::Builder::new().name("serial".into()).spawn(move || {
                    // Holding the slave open keeps the master readable while no host is attached.
                    let _slave = slave;
                    if let Err(e) = serve_on(&mut server, master, emulate_baud, &stop) {
                        tracing::error!("serial link on {path}: {e}");
                    }
                })?;
                Ok(Some(handle))
            }
            #[cfg(not(unix))]
            anyhow::bail!("pseudo-terminals need a Unix system")
        }
        SerialSpec::Device(path) => {
            let handle = std::thread::Builder::new().name("serial".into()).spawn(move || {
                let mut backoff = Duration::from_millis(500);
                while !stop.load(Ordering::Relaxed) {
                    // A USB adapter may come and go: reopen with back-off, never give up.
                    match serialport::new(&path, baud).timeout(Duration::from_millis(200)).open() {
                        Ok(port) => {
                            backoff = Duration::from_millis(500);
                            tracing::info!("serial link on {path} at {baud} baud");
                            if let Err(e) = serve_on(&mut server, port, emulate_baud, &stop) {
                                tracing::warn!("serial link on {path}: {e}; reopening");
                            }
                        }
                        Err(e) => {
                            tracing::warn!("cannot open {path}: {e}; retrying in {} ms", backoff.as_millis());
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            })?;
            Ok(Some(handle))
        }
    }
}
