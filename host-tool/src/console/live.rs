//! What the doors say, as the console shows it: a thread follows the site's
//! broker (every door's retained status and its events) and keeps the
//! latest status per door and the most recent events; new events are also
//! handed to the pages' live streams. Without a broker the doors show
//! offline and the thread keeps trying.

use facegate_site_admin::broker::{DoorMessage, Link};
use facegate_site_admin::SiteConfig;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events kept for the Events page.
pub const KEPT_EVENTS: usize = 5000;

/// What the console knows of the doors now.
#[derive(Default)]
pub struct Doors {
    /// The latest status of each door (as the door published it).
    pub statuses: BTreeMap<String, Value>,
    /// The most recent events, oldest first, each once per (door, seq).
    pub events: VecDeque<Value>,
    seen: HashSet<(String, u64)>,
    /// Connected to the broker.
    pub broker_up: bool,
    /// Why not, when not.
    pub broker_error: Option<String>,
}

impl Doors {
    /// Takes an event unless it was taken already (a door sends again what
    /// was not acknowledged): true when it is new.
    fn take_event(&mut self, event: Value) -> bool {
        let key = (event["door"].as_str().unwrap_or_default().to_string(), event["seq"].as_u64().unwrap_or(u64::MAX));
        if key.1 != u64::MAX && !self.seen.insert(key) {
            return false;
        }
        self.events.push_back(event);
        while self.events.len() > KEPT_EVENTS {
            if let Some(old) = self.events.pop_front() {
                self.seen.remove(&(old["door"].as_str().unwrap_or_default().to_string(), old["seq"].as_u64().unwrap_or(0)));
            }
        }
        true
    }
}

/// The live view shared by the pages and the broker thread.
pub struct Live {
    /// The doors' state.
    pub doors: Mutex<Doors>,
    /// New events, as they arrive.
    pub events: broadcast::Sender<Value>,
    stop: AtomicBool,
}

impl Live {
    /// Starts following the broker of `config`.
    pub fn start(config: SiteConfig) -> Arc<Live> {
        let live = Arc::new(Live { doors: Mutex::default(), events: broadcast::channel(1024).0, stop: AtomicBool::new(false) });
        let follower = live.clone();
        std::thread::Builder::new()
            .name("console-broker".into())
            .spawn(move || follower.follow(&config))
            .expect("a thread for the broker");
        live
    }

    /// A copy of the doors' state.
    pub fn doors<R>(&self, read: impl FnOnce(&Doors) -> R) -> R {
        read(&self.doors.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops following (the thread ends at its next message or retry).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn follow(&self, config: &SiteConfig) {
        while !self.stop.load(Ordering::Relaxed) {
            let result = Link::connect(config, "console", true).and_then(|mut link| {
                self.set_broker(true, None);
                link.watch(|message| {
                    self.take(message);
                    !self.stop.load(Ordering::Relaxed)
                })
            });
            if let Err(e) = result {
                self.set_broker(false, Some(format!("{e:#}")));
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }

    fn set_broker(&self, up: bool, error: Option<String>) {
        let mut doors = self.doors.lock().unwrap_or_else(|p| p.into_inner());
        doors.broker_up = up;
        doors.broker_error = error;
        if !up {
            // The doors' retained statuses are read again on reconnection.
            doors.statuses.clear();
        }
    }

    fn take(&self, message: DoorMessage) {
        let mut doors = self.doors.lock().unwrap_or_else(|p| p.into_inner());
        match message {
            DoorMessage::Status(door, status) => {
                doors.statuses.insert(door, status);
            }
            DoorMessage::Event(event) => {
                if doors.take_event(event.clone()) {
                    // Nobody listening is fine.
                    let _ = self.events.send(event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_sent_twice_is_kept_once_and_the_oldest_go_first() {
        let mut doors = Doors::default();
        let event = |door: &str, seq: u64| serde_json::json!({"door": door, "seq": seq, "kind": "granted"});
        assert!(doors.take_event(event("front", 1)));
        assert!(!doors.take_event(event("front", 1)), "sent again");
        assert!(doors.take_event(event("lab", 1)), "another door's first");
        for seq in 2..(KEPT_EVENTS as u64 + 10) {
            doors.take_event(event("front", seq));
        }
        assert_eq!(doors.events.len(), KEPT_EVENTS);
        assert_eq!(doors.events.back().unwrap()["seq"], KEPT_EVENTS as u64 + 9);
        assert_eq!(doors.seen.len(), KEPT_EVENTS, "forgotten with the events that left");
    }
}
