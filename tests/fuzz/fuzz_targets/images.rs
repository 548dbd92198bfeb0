//! An image as the door and the host tool decode it (JPEG, PNG, WebP, BMP,
//! PPM from a camera, an upload or a replay): refused or decoded within the
//! pixel limit, never a panic.
#![no_main]
use facegate_face::decode::decode_image;
use libfuzzer_sys::fuzz_target;

/// Small enough that a hostile header cannot make the fuzzer itself run out of memory.
const MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image(data, MAX_PIXELS) {
        assert!(u64::from(img.width()) * u64::from(img.height()) <= MAX_PIXELS);
    }
});
