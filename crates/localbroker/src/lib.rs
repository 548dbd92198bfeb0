//! A local MQTT broker and site doors, for the fleet tests and
//! `host-tool bench fleet`: [`broker::Broker`] runs Debian's mosquitto with
//! TLS on a free port; [`doors::RunningDoor`] runs a `device` process that
//! follows it.

#![warn(missing_docs)]

pub mod broker;
pub mod doors;
