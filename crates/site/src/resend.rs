//! The administrator's request that a door send its events again from a
//! sequence number (`doors/<door>/resend`): what repairs a collector that
//! missed events. It costs the door traffic, so only the administrator may
//! ask: the request is signed with the admin key over the door's topic, is
//! newer than the last one the door took, and asks for a bounded range.

use crate::keys::{AdminKey, SitePublicKey};
use crate::SiteError;
use serde::{Deserialize, Serialize};

/// The most events one request brings back; the collector asks again for
/// the rest once those arrived.
pub const MAX_RESEND: u64 = 5_000;

/// How far a request's time may be from the door's clock (milliseconds).
pub const MAX_SKEW_MS: i64 = 10 * 60 * 1000;

/// Events `from..=until` again, asked at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResendRequest {
    /// The first event wanted (from 1).
    pub from: u64,
    /// The last event wanted.
    pub until: u64,
    /// When it was asked (milliseconds since the Unix epoch): a door takes
    /// each request once, and none from far off its clock.
    pub at_ms: i64,
}

impl ResendRequest {
    /// The request signed for `topic` (the door's resend topic).
    pub fn sign(&self, admin: &AdminKey, topic: &str) -> Vec<u8> {
        admin.sign(topic, &postcard::to_allocvec(self).expect("a request serialises"))
    }

    /// A request received on `topic`, checked: signed by the site, newer
    /// than `last_at_ms` (the last one taken), within [`MAX_SKEW_MS`] of
    /// `now_ms`, a range from 1 on; its range cut to [`MAX_RESEND`] events.
    pub fn open(public: &SitePublicKey, topic: &str, payload: &[u8], last_at_ms: i64, now_ms: i64) -> Result<Self, SiteError> {
        let mut r: ResendRequest =
            postcard::from_bytes(public.open(topic, payload)?).map_err(|e| SiteError::Invalid(format!("resend request: {e}")))?;
        if r.at_ms <= last_at_ms {
            return Err(SiteError::Invalid("a resend request taken before (replayed)".into()));
        }
        if (r.at_ms - now_ms).abs() > MAX_SKEW_MS {
            return Err(SiteError::Invalid(format!("a resend request {} s off this door's clock", (r.at_ms - now_ms) / 1000)));
        }
        if r.from == 0 || r.until < r.from {
            return Err(SiteError::Invalid(format!("resend range {}..={}", r.from, r.until)));
        }
        r.until = r.until.min(r.from + MAX_RESEND - 1);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fresh_signed_bounded_request_is_taken() {
        let admin = AdminKey::generate().unwrap();
        let public = admin.public();
        let topic = "facegate/hq/doors/front/resend";
        let now = 1_800_000_000_000;
        let ask = ResendRequest { from: 1, until: 1_000_000, at_ms: now };
        let taken = ResendRequest::open(&public, topic, &ask.sign(&admin, topic), 0, now + 5).unwrap();
        assert_eq!((taken.from, taken.until), (1, MAX_RESEND), "the range is cut");
        let signed = ask.sign(&admin, topic);
        assert!(ResendRequest::open(&public, topic, &signed, now, now).is_err(), "taken once");
        assert!(ResendRequest::open(&public, "facegate/hq/doors/lab/resend", &signed, 0, now).is_err(), "for one door");
        assert!(ResendRequest::open(&public, topic, br#"{"from": 1}"#, 0, now).is_err(), "unsigned");
        let other = AdminKey::generate().unwrap();
        assert!(ResendRequest::open(&public, topic, &ask.sign(&other, topic), 0, now).is_err(), "another key");
        let old = ResendRequest { at_ms: now - MAX_SKEW_MS - 1, ..ask };
        assert!(ResendRequest::open(&public, topic, &old.sign(&admin, topic), 0, now).is_err(), "far off the clock");
        let backwards = ResendRequest { from: 9, until: 3, ..ask };
        assert!(ResendRequest::open(&public, topic, &backwards.sign(&admin, topic), 0, now).is_err());
        let zero = ResendRequest { from: 0, ..ask };
        assert!(ResendRequest::open(&public, topic, &zero.sign(&admin, topic), 0, now).is_err());
    }
}
