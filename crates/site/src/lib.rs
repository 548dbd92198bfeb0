//! A site of many facegate doors, kept in sync through an MQTT broker.
//!
//! - [`rules`]: people's access (groups, validity), doors, weekly schedules,
//!   and the decision with the rule that denied;
//! - [`keys`]: the admin key that signs every record and the data key that
//!   seals every template;
//! - [`records`]: what is published on which topic;
//! - [`replica`]: the administrator's state as messages, and a door's copy
//!   rebuilt from them, applied only when complete;
//! - [`door`]: a door's secrets and the rules it keeps on disk;
//! - [`status`]: what a door says about itself, read as untrusted input;
//! - [`resend`]: the administrator's signed request for events again.
//!
//! With the `mqtt` feature, [`mqtt`] says how both ends reach the broker;
//! the messages themselves are carried by the device and the host tool.

#![warn(missing_docs)]

pub mod door;
pub mod keys;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod records;
pub mod replica;
pub mod resend;
pub mod rules;
pub mod status;

pub use door::{DoorCopy, DoorSecrets};
pub use keys::{AdminKey, DataKey, SitePublicKey};
pub use records::{Manifest, NetworkTemplates, PersonRecord, Topics};
pub use replica::{Freshness, Received, Replica, SitePerson, SiteState, Snapshot};
pub use rules::{Access, Denial, Door, DoorsKnow, Group, Rules, Schedule, WeeklyWindow};
pub use status::DoorStatus;

/// What can go wrong with site records.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A message without the site's signature envelope.
    #[error("not a signed site record")]
    NotSigned,
    /// A signature that does not verify: another key, another topic, or altered bytes.
    #[error("the signature does not verify with the site's key (another key, another topic, or altered bytes)")]
    BadSignature,
    /// Sealed bytes that do not open with the site's data key.
    #[error("sealed templates do not open with this site's data key")]
    Unsealable,
    /// A value that breaks the site's rules or format.
    #[error("{0}")]
    Invalid(String),
    /// A correctly signed record that is still not taken (an old site
    /// replayed, a manifest too old): worth the administrator's attention.
    #[error("{0}")]
    Refused(String),
    /// The system's random source failed.
    #[error("no random bytes: {0}")]
    Random(String),
}
