//! Pairing secrets and message authentication.
//!
//! A request's MAC is HMAC-SHA256(secret, "facegate-req" ‖ version ‖ id ‖ host ‖
//! counter ‖ body); a response's is HMAC-SHA256(secret, "facegate-rsp" ‖ version
//! ‖ id ‖ counter ‖ body), with the request's counter, so a recorded response
//! cannot answer a later request either. The device accepts a counter only if
//! it exceeds the last one it accepted from that host.

use crate::message::HostId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A shared pairing secret.
pub type Secret = [u8; 32];

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

fn mac_of(secret: &Secret, parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m
}

fn request_parts<'a>(
    version: &'a [u8; 2],
    id: &'a [u8; 4],
    host: &'a HostId,
    counter: &'a [u8; 8],
    body: &'a [u8],
) -> [&'a [u8]; 6] {
    [b"facegate-req", version, id, host, counter, body]
}

/// MAC of a request.
pub fn sign_request(secret: &Secret, version: u16, id: u32, host: &HostId, counter: u64, body: &[u8]) -> [u8; 32] {
    let (v, i, c) = (version.to_le_bytes(), id.to_le_bytes(), counter.to_le_bytes());
    mac_of(secret, &request_parts(&v, &i, host, &c, body)).finalize().into_bytes().into()
}

/// Checks a request's MAC in constant time.
pub fn verify_request(secret: &Secret, version: u16, id: u32, host: &HostId, counter: u64, body: &[u8], mac: &[u8; 32]) -> bool {
    let (v, i, c) = (version.to_le_bytes(), id.to_le_bytes(), counter.to_le_bytes());
    mac_of(secret, &request_parts(&v, &i, host, &c, body)).verify_slice(mac).is_ok()
}

/// MAC of a response to the request with `counter`.
pub fn sign_response(secret: &Secret, version: u16, id: u32, counter: u64, body: &[u8]) -> [u8; 32] {
    let (v, i, c) = (version.to_le_bytes(), id.to_le_bytes(), counter.to_le_bytes());
    mac_of(secret, &[b"facegate-rsp", &v, &i, &c, body]).finalize().into_bytes().into()
}

/// Checks a response's MAC in constant time.
pub fn verify_response(secret: &Secret, version: u16, id: u32, counter: u64, body: &[u8], mac: &[u8; 32]) -> bool {
    let (v, i, c) = (version.to_le_bytes(), id.to_le_bytes(), counter.to_le_bytes());
    mac_of(secret, &[b"facegate-rsp", &v, &i, &c, body]).verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_every_field() {
        let (s, h) = ([7u8; 32], [1u8; 16]);
        let mac = sign_request(&s, 1, 5, &h, 10, b"body");
        assert!(verify_request(&s, 1, 5, &h, 10, b"body", &mac));
        assert!(!verify_request(&s, 1, 5, &h, 11, b"body", &mac), "counter");
        assert!(!verify_request(&s, 1, 6, &h, 10, b"body", &mac), "id");
        assert!(!verify_request(&s, 2, 5, &h, 10, b"body", &mac), "version");
        assert!(!verify_request(&s, 1, 5, &[2; 16], 10, b"body", &mac), "host");
        assert!(!verify_request(&s, 1, 5, &h, 10, b"bodY", &mac), "body");
        assert!(!verify_request(&[8; 32], 1, 5, &h, 10, b"body", &mac), "key");
        let r = sign_response(&s, 1, 5, 10, b"ok");
        assert!(verify_response(&s, 1, 5, 10, b"ok", &r));
        assert!(!verify_response(&s, 1, 5, 9, b"ok", &r));
        assert_ne!(r, mac, "requests and responses are in different domains");
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
    }
}
