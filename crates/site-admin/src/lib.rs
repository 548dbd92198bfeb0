//! The administrator's side of a site, as a library: the site file (who the
//! administrator is, how to reach the broker) and the connection to the
//! broker. `host-tool --site …` and the lab's fleet benchmark use it.

pub mod broker;

use anyhow::{Context, Result};
use facegate_site::{AdminKey, DataKey};
use serde::{Deserialize, Serialize};

/// The site file: who the administrator is and how to reach the broker.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's name (a topic level).
    pub name: String,
    /// `mqtts://host:port`.
    pub broker: String,
    /// PEM of the broker's CA; empty: the system's roots.
    #[serde(default)]
    pub ca_file: String,
    /// The administrator's broker login.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The admin signing key (hex; secret).
    pub admin_key: String,
    /// The site's data key (hex; secret).
    pub data_key: String,
    /// The console's administrator password as an argon2 hash (a PHC
    /// string; `host-tool --site … console --set-password`); empty: not set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub console_password: String,
}

impl SiteConfig {
    /// The admin signing key.
    pub fn admin(&self) -> Result<AdminKey> {
        Ok(AdminKey::from_bytes(&unhex32("admin_key", &self.admin_key)?))
    }

    /// The site's data key.
    pub fn data(&self) -> Result<DataKey> {
        Ok(DataKey::from_bytes(unhex32("data_key", &self.data_key)?))
    }
}

fn unhex32(what: &str, text: &str) -> Result<[u8; 32]> {
    facegate_core::from_hex(text).with_context(|| format!("{what} must be 64 hex digits"))
}
