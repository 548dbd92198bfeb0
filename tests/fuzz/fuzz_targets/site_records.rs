//! What a door reads from the broker: signed envelopes, person records,
//! manifests, resend asks; never a panic, and nothing unsigned is taken.
#![no_main]
use facegate_site::records::{Manifest, PersonRecord, SealedPerson};
use facegate_site::resend::ResendRequest;
use facegate_site::{AdminKey, DataKey, Replica};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The site's key, made once (an Ed25519 key per input would be most of the time).
fn admin() -> &'static AdminKey {
    static KEY: OnceLock<AdminKey> = OnceLock::new();
    KEY.get_or_init(|| AdminKey::from_bytes(&[3; 32]))
}

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::from_bytes(data);
    let _ = PersonRecord::from_bytes(data);
    if let Ok(p) = SealedPerson::from_bytes(data) {
        let _ = p.open_for("hq", "front", &DataKey::from_bytes([1; 32]), facegate_core::ModelId::from_bytes([5; 32]));
    }
    let admin = admin();
    let _ = ResendRequest::open(&admin.public(), "facegate/hq/doors/front/resend", data, 0, 1_800_000_000_000);
    let mut door = Replica::new("hq", "front", admin.public(), DataKey::from_bytes([1; 32]), 0).expect("a replica");
    for topic in ["facegate/hq/manifest", "facegate/hq/people/p-1"] {
        // Random bytes carry no signature of the site's key: refused, nothing held.
        assert!(door.receive(topic, data).is_err() || data.is_empty(), "unsigned bytes taken on {topic}");
    }
    assert_eq!(door.pending(), None);
});
