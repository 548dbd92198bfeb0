#![warn(missing_docs)]
//! The gallery side of provisioning, shared by the device (requests over its
//! serial link) and the host tool's offline mode (`--gallery FILE`), so both
//! answer every gallery request with the same code:
//!
//! - [`GalleryHome`]: a gallery file and its copy in memory; changes are made
//!   on a copy, saved atomically, then swapped in;
//! - [`GalleryService`]: enrol, add templates, remove, rename, people pages,
//!   verify, identify, backup and restore, as [`Request`]s → [`Response`]s;
//! - [`wire`]: store types ↔ wire types (errors, log events).
//!
//! The wire crate (`facegate-protocol`) stays frames, messages, pairing and
//! sessions; the gallery file stays in `facegate-store`.

mod home;
mod service;
pub mod wire;

pub use home::{at_rest, GalleryHome};
pub use service::{Change, GalleryService, Handled};

use facegate_protocol::{Request, Response};
