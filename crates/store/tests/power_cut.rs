//! Power cuts: `kill -9` the writer at random moments, 200 times; the gallery
//! must always load as a complete old or new state, and no earlier event may
//! be lost from the access log.

use facegate_store::{AccessLog, Gallery};
use std::process::Command;
use std::time::Duration;

#[test]
fn kill_dash_nine_during_writes_loses_nothing_earlier() {
    let dir = tempfile::tempdir().unwrap();
    let (gallery_path, log_path) = (dir.path().join("gallery.fg"), dir.path().join("access.log"));
    let (mut last_people, mut last_events) = (0usize, 0usize);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..200 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-churn")).arg(dir.path()).spawn().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(3_000 + seed % 25_000));
        child.kill().unwrap(); // SIGKILL: no destructors, no flushing
        child.wait().unwrap();

        let people = if gallery_path.exists() {
            let g = Gallery::load(&gallery_path).unwrap_or_else(|e| panic!("round {round}: gallery unreadable: {e}"));
            let complete = g.people().iter().enumerate().all(|(i, p)| p.name == format!("p{}", i + 1) && p.template_count() == 5);
            assert!(complete, "round {round}: gallery is not a complete state");
            g.people().len()
        } else {
            0
        };
        assert!(people >= last_people, "round {round}: gallery went back from {last_people} to {people}");
        let events =
            if log_path.exists() { AccessLog::open(&log_path, 100_000).unwrap().events_since(0).unwrap() } else { Vec::new() };
        // Sequence numbers 1..=n with no gap, and the logged people in enrolment order.
        let in_order =
            events.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1) && events.windows(2).all(|w| w[0].person < w[1].person);
        assert!(in_order, "round {round}: an event is missing or out of order");
        assert!(events.len() >= last_events, "round {round}: events lost");
        // Each person is saved before their event is logged: the log never runs ahead.
        assert!(events.last().is_none_or(|e| e.person <= Some(people as u32)), "round {round}: the log ran ahead of the gallery");
        (last_people, last_events) = (people, events.len());
    }
    assert!(last_people > 0, "the writer never got going");
    eprintln!("200 kills: gallery reached {last_people} people, log {last_events} events, always consistent");
}
