#![warn(missing_docs)]
//! facegate's provisioning protocol, shared by the device and the host tool.
//!
//! Layers, bottom up:
//! - [`frame`]: a frame is `COBS(payload ‖ CRC-32(payload)) 0x00`, at most
//!   [`MAX_FRAME`] bytes of payload, so a receiver resynchronises on the next zero
//!   byte after line noise, and a flipped bit is caught by the CRC;
//! - [`message`]: the payload is a postcard-encoded [`message::RequestFrame`] or
//!   [`message::ResponseFrame`]: protocol version, request id, authentication,
//!   and the request or response body;
//! - [`auth`]: pairing secrets and HMAC-SHA256 over (counter, request) with a
//!   counter that must increase, so replays and forgeries are refused;
//! - [`link`]: frames over a serial port (or a pseudo-terminal);
//! - [`client`] (the host side) and [`server`] (the device side) sessions.

pub mod auth;
pub mod client;
pub mod frame;
pub mod link;
pub mod message;
pub mod server;

pub use client::{Client, ClientError};
pub use message::{Request, Response, WireError};

/// Protocol version; both sides must speak the same one.
/// 2: log events carry the live score.
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest frame payload (before COBS and CRC), in bytes.
pub const MAX_FRAME: usize = 4096;

/// Bytes of data per chunk in backup and restore transfers (fits a frame with room for headers).
pub const CHUNK: usize = 3072;
