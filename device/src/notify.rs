//! systemd's notification protocol (`sd_notify`), without libsystemd: READY=1
//! at start, WATCHDOG=1 from the frame loop, so that a stuck loop is killed
//! and restarted by systemd (and the relay released by `ExecStopPost`).

use std::time::{Duration, Instant};

/// A notifier; does nothing when not started by systemd with `NOTIFY_SOCKET`.
pub struct Notifier {
    #[cfg(target_os = "linux")]
    socket: Option<(std::os::unix::net::UnixDatagram, std::os::unix::net::SocketAddr)>,
    interval: Option<Duration>,
    last: Option<Instant>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let interval = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            // Ping at twice the rate systemd requires.
            .map(|us| Duration::from_micros(us / 2));
        #[cfg(target_os = "linux")]
        {
            let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
                use std::os::linux::net::SocketAddrExt;
                let addr = match path.strip_prefix('@') {
                    Some(abstract_name) => std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).ok()?,
                    None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
                };
                Some((std::os::unix::net::UnixDatagram::unbound().ok()?, addr))
            });
            Notifier { socket, interval, last: None }
        }
        #[cfg(not(target_os = "linux"))]
        Notifier { interval, last: None }
    }

    /// Sends one state string (e.g. `READY=1`); errors are ignored (no systemd).
    pub fn send(&self, state: &str) {
        #[cfg(target_os = "linux")]
        if let Some((socket, addr)) = &self.socket {
            let _ = socket.send_to_addr(state.as_bytes(), addr);
        }
        let _ = state;
    }

    /// Keep-alive from the frame loop, rate-limited to half the watchdog period.
    pub fn watchdog(&mut self) {
        let Some(interval) = self.interval else { return };
        if self.last.is_none_or(|t| t.elapsed() >= interval) {
            self.send("WATCHDOG=1");
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn ready_and_watchdog_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut n = Notifier {
            socket: Some((
                std::os::unix::net::UnixDatagram::unbound().unwrap(),
                std::os::unix::net::SocketAddr::from_pathname(&path).unwrap(),
            )),
            interval: Some(Duration::from_secs(3600)),
            last: None,
        };
        n.send("READY=1");
        n.watchdog();
        n.watchdog(); // rate-limited: not sent
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
        server.set_nonblocking(true).unwrap();
        assert!(server.recv(&mut buf).is_err(), "second ping was rate-limited");
    }
}
