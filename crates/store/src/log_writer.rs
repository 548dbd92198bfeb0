//! The access log written by a thread of its own.
//!
//! Each append to the [`AccessLog`] is synced to the disk before it returns,
//! which on an SD card can take tens of milliseconds. The door's frame loop
//! hands its events to a [`LogWriter`] instead: an event is numbered at once
//! and put on a bounded queue, and the writer thread appends and syncs it.
//! Nothing is dropped: when the queue is full (the disk is stalled), the
//! caller waits for room. Readers see every event queued before they read
//! ([`LogWriter::read`] waits for the queue to reach the disk first).
//!
//! What a crash can lose: the events still in the queue (a few milliseconds'
//! worth while the disk keeps up), against the one event being written when
//! the log was written in the loop.

use crate::access_log::{AccessLog, Event};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Events the queue holds before a caller waits.
pub const QUEUE_DEPTH: usize = 256;

/// How far numbering and writing have got.
struct Progress {
    /// The sequence number the next queued event gets.
    next_seq: u64,
    /// Every event numbered below this has been appended (or failed to be).
    done_below: u64,
}

struct Shared {
    log: Mutex<AccessLog>,
    progress: Mutex<Progress>,
    written: Condvar,
}

/// An access log with a writer thread and a bounded queue in front of it.
pub struct LogWriter {
    shared: Arc<Shared>,
    /// Numbering and sending happen under this lock, so the queue's order is
    /// the order of the sequence numbers. `None` once closed.
    queue: Mutex<Option<SyncSender<Event>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogWriter {
    /// Starts the writer thread for `log`, with a queue of `depth` events;
    /// `lost` is told of each event an append failed for (disk full, I/O
    /// error): that event only is not in the log.
    pub fn start(log: AccessLog, depth: usize, lost: impl Fn(u64, &crate::StoreError) + Send + 'static) -> std::io::Result<Self> {
        let next_seq = log.last_seq() + 1;
        let shared = Arc::new(Shared {
            log: Mutex::new(log),
            progress: Mutex::new(Progress { next_seq, done_below: next_seq }),
            written: Condvar::new(),
        });
        let (tx, rx) = sync_channel(depth.max(1));
        let writer = shared.clone();
        let thread = std::thread::Builder::new().name("access-log".into()).spawn(move || write_all(&writer, rx, lost))?;
        Ok(LogWriter { shared, queue: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Queues `event` and returns the sequence number it is logged under.
    /// Returns at once unless the queue is full; then waits for room (an
    /// event is never dropped). After [`close`](Self::close), the event is
    /// appended here, synchronously.
    pub fn append(&self, event: &Event) -> Result<u64, crate::StoreError> {
        let queue = lock(&self.queue);
        let mut event = event.clone();
        {
            let mut progress = lock(&self.shared.progress);
            event.seq = progress.next_seq;
            progress.next_seq += 1;
        }
        let seq = event.seq;
        match queue.as_ref() {
            // The writer ends only when the queue is closed, so a send fails only if it died.
            Some(tx) => match tx.send(event) {
                Ok(()) => Ok(seq),
                Err(e) => self.write_now(e.0),
            },
            None => self.write_now(event),
        }
    }

    fn write_now(&self, event: Event) -> Result<u64, crate::StoreError> {
        let result = lock(&self.shared.log).append_numbered(&event);
        mark_done(&self.shared, event.seq);
        result
    }

    /// Waits until every event queued so far is appended, then gives the log
    /// to read (or clear).
    pub fn read(&self) -> MutexGuard<'_, AccessLog> {
        self.flush();
        lock(&self.shared.log)
    }

    /// The log as it is on disk now, without waiting for the queue. Holding
    /// it keeps the writer from appending (as a stalled disk would).
    pub fn lock_now(&self) -> MutexGuard<'_, AccessLog> {
        lock(&self.shared.log)
    }

    /// Waits until every event queued so far has been appended.
    pub fn flush(&self) {
        let mut progress = lock(&self.shared.progress);
        let target = progress.next_seq;
        while progress.done_below < target {
            progress = self.shared.written.wait(progress).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Events queued and not yet appended.
    pub fn pending(&self) -> u64 {
        let progress = lock(&self.shared.progress);
        progress.next_seq - progress.done_below
    }

    /// Writes what is queued and stops the writer thread; later appends are
    /// written synchronously. Called on drop too.
    pub fn close(&self) {
        drop(lock(&self.queue).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn mark_done(shared: &Shared, seq: u64) {
    let mut progress = lock(&shared.progress);
    progress.done_below = progress.done_below.max(seq + 1);
    shared.written.notify_all();
}

/// The writer thread: appends each queued event in order until the queue closes.
fn write_all(shared: &Shared, queue: Receiver<Event>, lost: impl Fn(u64, &crate::StoreError)) {
    for event in queue {
        if let Err(e) = lock(&shared.log).append_numbered(&event) {
            lost(event.seq, &e);
        }
        mark_done(shared, event.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::EventKind;

    fn event(i: i64) -> Event {
        Event::new(if i % 2 == 0 { EventKind::Granted } else { EventKind::Unknown }, 1_700_000_000_000 + i)
    }

    #[test]
    fn appends_do_not_wait_for_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LogWriter::start(AccessLog::open(&dir.path().join("a.log"), 100).unwrap(), 16, |_, _| {}).unwrap();
        // Holding the log is a disk that does not answer: the writer cannot append.
        let stalled = writer.lock_now();
        let seqs: Vec<u64> = (0..10).map(|i| writer.append(&event(i)).unwrap()).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "numbered at once, in order");
        assert!(writer.pending() >= 9, "the events wait in the queue, not in the caller");
        assert_eq!(stalled.last_seq(), 0, "nothing reached the log while it was stalled");
        drop(stalled);
        let log = writer.read();
        let logged = log.events_since(0).unwrap();
        assert_eq!(logged.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
        assert_eq!(logged.iter().map(|e| e.time_ms).collect::<Vec<_>>(), (0..10).map(|i| event(i).time_ms).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_waits_and_drops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(LogWriter::start(AccessLog::open(&dir.path().join("a.log"), 100).unwrap(), 2, |_, _| {}).unwrap());
        let stalled = writer.lock_now();
        let appending = {
            let writer = writer.clone();
            std::thread::spawn(move || (0..8).map(|i| writer.append(&event(i)).unwrap()).collect::<Vec<_>>())
        };
        // The queue holds 2 and the writer 1 more: the caller waits for room.
        while writer.pending() < 4 {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!appending.is_finished(), "a full queue makes the caller wait instead of dropping");
        drop(stalled);
        assert_eq!(appending.join().unwrap(), (1..=8).collect::<Vec<_>>());
        assert_eq!(writer.read().events_since(0).unwrap().len(), 8);
    }

    #[test]
    fn closing_writes_what_is_queued_and_numbering_goes_on_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        {
            let writer = LogWriter::start(AccessLog::open(&path, 100).unwrap(), 8, |_, _| {}).unwrap();
            for i in 0..5 {
                writer.append(&event(i)).unwrap();
            }
            // Dropped with events queued: they are written before the thread ends.
        }
        let writer = LogWriter::start(AccessLog::open(&path, 100).unwrap(), 8, |_, _| {}).unwrap();
        assert_eq!(writer.append(&event(5)).unwrap(), 6);
        writer.close();
        assert_eq!(writer.append(&event(6)).unwrap(), 7, "after close, appends are synchronous");
        let seqs: Vec<u64> = writer.read().events_since(0).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    }
}
