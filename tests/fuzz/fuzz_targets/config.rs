//! The device's configuration file (also written over the serial link with
//! `config set`): refused with a reason or read, never a panic; what is read
//! is valid.
#![no_main]
use facegate_device::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text);
    }
});
