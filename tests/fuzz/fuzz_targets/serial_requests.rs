//! A request's body as the device decodes it after the frame: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = facegate_protocol::message::decode_request(data);
    let _ = facegate_protocol::server::Pairings::from_bytes(data);
});
