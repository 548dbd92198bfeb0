//! Where the door's events go: the access log (durably, through its writer
//! thread, so the frame loop never waits on the disk's sync), the trace, and
//! with `--events-json` one JSON object per line on stdout, relay transitions
//! included. Every other module reports through here.

use facegate_core::print::print_json_line;
use facegate_store::access_log::iso_time;
use facegate_store::log_writer::QUEUE_DEPTH;
use facegate_store::{AccessLog, Event, EventKind, LogWriter};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far the door's clock is set from the system's (see [`start_clock_at`]).
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the Unix epoch, by the door's clock.
pub fn now_ms() -> i64 {
    system_ms() + CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}

/// Runs the door's clock from `start_ms` on (`run --clock-start`): every
/// wall-clock reading — schedules, validity windows, event times — follows it.
pub fn start_clock_at(start_ms: i64) {
    CLOCK_OFFSET_MS.store(start_ms - system_ms(), Ordering::Relaxed);
}

/// The `--events-json` line of a relay transition; `cause` says why when it is
/// not the loop's own decision (e.g. `panic`).
pub fn relay_json(unlocked: bool, cause: Option<&str>) -> serde_json::Value {
    let mut v =
        serde_json::json!({"kind": "relay", "state": if unlocked { "unlocked" } else { "locked" }, "time": iso_time(now_ms())});
    if let Some(c) = cause {
        v["cause"] = c.into();
    }
    v
}

/// The access log and the JSON stream.
pub struct Events {
    /// The access log, if any, behind its writer thread.
    log: Option<LogWriter>,
    /// Print events as JSON lines on stdout.
    pub json: bool,
}

impl Events {
    /// Events to `log` (if any), and to stdout with `json`.
    pub fn new(log: Option<AccessLog>, json: bool) -> anyhow::Result<Self> {
        let lost = |seq, e: &facegate_store::StoreError| tracing::error!("access log: event {seq} not written: {e}");
        let log = log.map(|l| LogWriter::start(l, QUEUE_DEPTH, lost)).transpose()?;
        Ok(Events { log, json })
    }

    /// Numbers an event and queues it for the access log (it waits only when
    /// the queue is full: nothing is dropped), traces it, and prints it with
    /// `--events-json`.
    pub fn emit(&self, event: &Event) {
        let mut event = event.clone();
        if let Some(log) = &self.log {
            match log.append(&event) {
                Ok(seq) => event.seq = seq,
                Err(e) => tracing::error!("access log: {e}"),
            }
        }
        match event.kind {
            EventKind::Unknown | EventKind::DoorHeld | EventKind::Error | EventKind::Refused | EventKind::Denied => {
                tracing::warn!(kind = event.kind.as_str(), name = ?event.name, distance = ?event.distance, "event")
            }
            _ => tracing::info!(kind = event.kind.as_str(), name = ?event.name, distance = ?event.distance, "event"),
        }
        if self.json {
            print_json_line(&event.to_json());
        }
    }

    /// An event of `kind` about `name` (a person, a host, a setting), now.
    pub fn named(&self, kind: EventKind, name: &str) {
        let mut e = Event::new(kind, now_ms());
        e.name = Some(name.to_string());
        self.emit(&e);
    }

    /// Reports a relay transition on the JSON stream.
    pub fn relay(&self, unlocked: bool) {
        if self.json {
            print_json_line(&relay_json(unlocked, None));
        }
    }

    /// The access log with every event emitted so far in it (waits for the
    /// writer to catch up), or `None` without a log.
    pub fn log(&self) -> Option<MutexGuard<'_, AccessLog>> {
        self.log.as_ref().map(LogWriter::read)
    }

    /// The access log's writer (its queue and thread), or `None` without a log.
    pub fn writer(&self) -> Option<&LogWriter> {
        self.log.as_ref()
    }

    /// The oldest sequence number the log's ring can still hold (1 until it wrapped).
    pub fn first_seq(&self) -> u64 {
        self.log().map_or(1, |l| l.first_seq())
    }

    /// The latest sequence number in the log (0 without one).
    pub fn last_seq(&self) -> u64 {
        self.log().map_or(0, |l| l.last_seq())
    }

    /// Writes every queued event and stops the log's writer (at shutdown:
    /// threads still holding the events may outlive the loop).
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
    }
}
