//! An access log file of any content: opened (or refused), read, appended
//! to; never a panic, and an append after opening reads back.
#![no_main]
use facegate_store::{AccessLog, Event, EventKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // In memory when the system has it: the log is a file, and the disk is the slow part.
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let dir = base.join(format!("facegate-fuzz-log-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("access.log");
    std::fs::write(&path, data).expect("a scratch file");
    if let Ok(mut log) = AccessLog::open(&path, 64) {
        let _ = log.events_since(0);
        if let Ok(seq) = log.append(&Event::new(EventKind::Exit, 1_800_000_000_000)) {
            let read = log.events_since(seq - 1).expect("what was appended reads back");
            assert!(read.iter().any(|e| e.seq == seq && e.kind == EventKind::Exit));
        }
    }
});
