//! What the frame loop and the provisioning server share: the gallery, the
//! access log and the event stream, and the commands the server sends the loop.

use crate::runner::print_json_line;
use facegate_face::Embedding;
use facegate_store::{AccessLog, Event, EventKind, Gallery};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Instant;

/// State both threads use. The loop only ever takes the gallery's read lock;
/// the server prepares a new gallery aside and swaps it in, so a request holds
/// the write lock for a pointer swap, never for disk I/O.
pub struct Shared {
    /// Enrolled people.
    pub gallery: RwLock<Gallery>,
    /// The access log, if any.
    pub log: Option<Mutex<AccessLog>>,
    /// Frames read so far.
    pub frames: AtomicU64,
    /// When the device started.
    pub started: Instant,
    /// Print events as JSON lines on stdout.
    pub events_json: bool,
}

impl Shared {
    /// Shared state around a loaded gallery and log.
    pub fn new(gallery: Gallery, log: Option<AccessLog>, events_json: bool) -> Self {
        Shared {
            gallery: RwLock::new(gallery),
            log: log.map(Mutex::new),
            frames: AtomicU64::new(0),
            started: Instant::now(),
            events_json,
        }
    }

    /// The gallery for reading (a poisoned lock still holds a consistent gallery:
    /// writers only swap whole galleries).
    pub fn gallery(&self) -> RwLockReadGuard<'_, Gallery> {
        self.gallery.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the gallery.
    pub fn set_gallery(&self, next: Gallery) {
        *self.gallery.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// Frames so far.
    pub fn frame_count(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Logs an event durably, traces it, and prints it with `--events-json`.
    pub fn emit(&self, event: &Event) {
        let mut event = event.clone();
        if let Some(log) = &self.log {
            match log.lock().unwrap_or_else(|p| p.into_inner()).append(&event) {
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
        if self.events_json {
            print_json_line(&event_json(&event));
        }
    }
}

/// The JSON form of an event (the `--events-json` stream; `host-tool log --json` prints the same).
pub fn event_json(event: &Event) -> serde_json::Value {
    let mut v = facegate_protocol::ops::event_json(&facegate_protocol::ops::log_event(event));
    if let Some(o) = v.as_object_mut() {
        // Not yet logged when printed live: no sequence number.
        if event.seq == 0 {
            o.remove("seq");
        }
    }
    v
}

/// Requests from the provisioning server to the frame loop.
pub enum LoopCommand {
    /// Unlock for one pulse (already authenticated); `by` names the host.
    Unlock {
        /// The host's name.
        by: String,
    },
    /// Send the embeddings of the next `frames` frames that show exactly one usable face.
    Capture {
        /// How many.
        frames: usize,
        /// Give up then, sending what there is.
        deadline: Instant,
        /// Where to send them.
        reply: Sender<Vec<Embedding>>,
    },
    /// New live settings.
    Settings(Box<crate::config::Config>),
}
