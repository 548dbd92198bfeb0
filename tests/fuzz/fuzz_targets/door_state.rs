//! A door's own files and what its login writes: the rules copy, the site
//! secrets, a door's status; refused or read, never a panic.
#![no_main]
use facegate_site::{DoorCopy, DoorSecrets, DoorStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(copy) = DoorCopy::from_bytes(data) {
        assert_eq!(DoorCopy::from_bytes(&copy.to_bytes()).expect("a copy it wrote reads back"), copy);
    }
    if let Ok(status) = DoorStatus::from_json(data) {
        assert!(status.events_first <= facegate_site::status::MAX_SEQ);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = DoorSecrets::from_toml(text);
    }
});
