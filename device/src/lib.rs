#![warn(missing_docs)]
//! facegate's door unit as a library; the `device` binary is a thin shell
//! around [`commands`].
//!
//! Modules in the order the data flows:
//! [`source`] (camera or replay) → [`recognise`] (detect, align, embed,
//! identify) → [`policy`] (k of n frames) → [`lock`] (relay, door inputs) →
//! [`events`] (access log, JSON stream). Beside them: [`shared`] (what the
//! frame loop and the provisioning server share), [`provision`] (the serial
//! requests), [`serial`] (the link), [`runner`] (the loop that ties the
//! stages together), [`config`], [`notify`] (systemd).

pub mod at_rest;
pub mod cli;
pub mod commands;
pub mod config;
pub mod events;
pub mod fleet;
pub mod lock;
pub mod notify;
pub mod policy;
pub mod provision;
pub mod recognise;
pub mod runner;
pub mod serial;
pub mod shared;

/// Frame sources (camera, replay): the `facegate-camera` crate.
pub use facegate_camera as source;

#[cfg(feature = "tools")]
pub mod bench;
#[cfg(feature = "tools")]
pub mod demo;
