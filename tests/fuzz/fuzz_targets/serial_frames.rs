//! The serial link's frame decoder (COBS, CRC, length), fed in arbitrary
//! pieces: never a panic, never a frame over the limit, and what it accepts
//! decodes the same in one piece.
#![no_main]
use facegate_protocol::frame::{self, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let cut = (split as usize).min(bytes.len());
    let mut whole = Vec::new();
    Decoder::new().feed(bytes, |f| whole.push(f));
    let mut pieces = Vec::new();
    let mut d = Decoder::new();
    d.feed(&bytes[..cut], |f| pieces.push(f));
    d.feed(&bytes[cut..], |f| pieces.push(f));
    assert_eq!(whole, pieces, "the same frames however the bytes arrive");
    for payload in whole.into_iter().flatten() {
        assert!(payload.len() <= facegate_protocol::MAX_FRAME);
    }
    let _ = frame::decode(bytes);
});
