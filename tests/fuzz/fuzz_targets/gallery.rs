//! A gallery file, plain or sealed at rest: refused or read, never a panic;
//! what is read saves and reads back the same.
#![no_main]
use facegate_provision::at_rest;
use facegate_store::Gallery;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.fg");
    if let Ok(g) = Gallery::from_bytes(data, path) {
        let again = Gallery::from_bytes(&g.to_bytes(), path).expect("a gallery it wrote reads back");
        assert_eq!(again, g);
    }
    let key = facegate_site::DataKey::from_bytes([7; 32]);
    let _ = at_rest::open(data, Some(&key), path);
});
