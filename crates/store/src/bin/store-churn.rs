//! Test tool: rewrites a gallery and appends to an access log as fast as it
//! can, forever, so a test can `kill -9` it at random moments.
//! Usage: store-churn <dir>
//! State k: the gallery holds people p1..pk; the log holds events 1..k.

use facegate_store::{AccessLog, Event, EventKind, Gallery};
use std::path::PathBuf;

/// Any fixed id: the tool only churns files.
const CHURN_MODEL: facegate_core::ModelId = facegate_core::ModelId::from_bytes([0xc4; 32]);

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: store-churn <dir>"));
    let gallery_path = dir.join("gallery.fg");
    let mut gallery = match Gallery::load(&gallery_path) {
        Ok(g) => g,
        Err(_) if !gallery_path.exists() => Gallery::new(CHURN_MODEL),
        Err(e) => panic!("gallery unreadable at start: {e}"),
    };
    let mut log = AccessLog::open(&dir.join("access.log"), 100_000).expect("log");
    let mut k = gallery.people().len() as u32;
    loop {
        k += 1;
        let template = std::array::from_fn(|i| ((i as u32 * 31 + k) % 97) as f32 / 97.0);
        gallery.add_person(&format!("p{k}"), vec![template; 5], CHURN_MODEL, k as u64).expect("add");
        gallery.save(&gallery_path).expect("save");
        let mut e = Event::new(EventKind::Granted, k as i64);
        e.person = Some(k);
        log.append(&e).expect("append");
    }
}
