//! The host's identity and its pairing keys, one file per device, owner-only.
//!
//! Location: `$FACEGATE_HOME`, else the platform's configuration directory:
//! `$XDG_CONFIG_HOME/facegate` (`~/.config/facegate`), `%APPDATA%\facegate`,
//! `~/Library/Application Support/facegate`. Files: `host.id` and `devices/<device id>.key`.

use anyhow::{bail, Context, Result};
use facegate_core::{from_hex as unhex, hex};
use facegate_protocol::auth::{random_bytes, Secret};
use facegate_protocol::message::{DeviceId, HostId};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// A stored pairing.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    device: String,
    secret: String,
    paired: String,
    port: String,
}

/// The key store.
pub struct Keys {
    dir: PathBuf,
}

impl Keys {
    /// The store at its usual place.
    pub fn open() -> Result<Self> {
        let dir = if let Some(d) = std::env::var_os("FACEGATE_HOME") {
            PathBuf::from(d)
        } else if let Some(d) = dirs::config_dir() {
            d.join("facegate")
        } else {
            bail!("no home directory: set FACEGATE_HOME to where pairing keys may be kept");
        };
        Ok(Keys { dir })
    }

    fn private_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }

    /// Writes `text` atomically, owner-only, the directory synced: a pairing
    /// acknowledged survives a power cut.
    fn write_private(&self, path: &Path, text: &str) -> Result<()> {
        self.private_dir(facegate_store::disk::parent(path))?;
        facegate_store::atomic::replace_private(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// This host's id, made on first use.
    pub fn host_id(&self) -> Result<HostId> {
        let path = self.dir.join("host.id");
        if let Ok(text) = fs::read_to_string(&path) {
            return unhex(text.trim()).with_context(|| format!("{} is damaged; delete it and pair again", path.display()));
        }
        let id: HostId = random_bytes();
        self.write_private(&path, &hex(&id))?;
        Ok(id)
    }

    /// Where the key for `device` is kept.
    pub fn key_path(&self, device: &DeviceId) -> PathBuf {
        self.dir.join("devices").join(format!("{}.key", hex(device)))
    }

    /// The secret for `device`, if paired.
    pub fn secret(&self, device: &DeviceId) -> Result<Option<Secret>> {
        let path = self.key_path(device);
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(None);
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!("{} is readable by others (mode {mode:o}); run `chmod 600` on it", path.display());
            }
        }
        let k: KeyFile = serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
        Ok(Some(unhex(&k.secret).with_context(|| format!("{} is damaged", path.display()))?))
    }

    /// Stores the secret for `device`.
    pub fn store(&self, device: &DeviceId, secret: &Secret, port: &str) -> Result<PathBuf> {
        let path = self.key_path(device);
        let k = KeyFile { device: hex(device), secret: hex(secret), paired: now_iso(), port: port.to_string() };
        self.write_private(&path, &serde_json::to_string_pretty(&k)?)?;
        Ok(path)
    }

    /// Deletes the key for `device`; whether there was one.
    pub fn forget(&self, device: &DeviceId) -> Result<bool> {
        let path = self.key_path(device);
        match facegate_store::disk::remove(&path) {
            Ok(()) => {
                facegate_store::disk::sync_dir(facegate_store::disk::parent(&path))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Now, ISO 8601 UTC.
pub fn now_iso() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    crate::output::iso_time(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys { dir: dir.path().join("fg") };
        let id = keys.host_id().unwrap();
        assert_eq!(keys.host_id().unwrap(), id, "stable");
        let device = [3u8; 16];
        assert_eq!(keys.secret(&device).unwrap(), None);
        let path = keys.store(&device, &[9; 32], "/dev/ttyUSB0").unwrap();
        assert_eq!(keys.secret(&device).unwrap(), Some([9; 32]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(keys.secret(&device).is_err(), "a key others can read is refused");
        }
        assert!(keys.forget(&device).unwrap());
        assert!(!keys.forget(&device).unwrap());
    }

    #[test]
    fn power_loss_host_id_and_pairing_keys() {
        use facegate_power_loss::{explore, reached};
        use facegate_store::disk;
        let keys = |d: &Path| Keys { dir: d.join("fg") };
        let device = [3u8; 16];
        let made = std::cell::Cell::new(None);
        let report = explore(
            "host id and pairing keys (host)",
            |d| keys(d).private_dir(&d.join("fg").join("devices")).unwrap(),
            |d| {
                made.set(Some(keys(d).host_id().unwrap()));
                disk::mark("host id");
                keys(d).store(&device, &[9; 32], "/dev/ttyUSB0").unwrap();
                disk::mark("stored");
                disk::mark("forgetting");
                keys(d).forget(&device).unwrap();
                disk::mark("forgotten");
            },
            |d, marks| {
                let id_path = d.join("fg").join("host.id");
                if id_path.exists() {
                    let id = keys(d).host_id().map_err(|e| format!("{e:#}"))?;
                    if Some(id) != made.get() {
                        return Err("the host id changed".into());
                    }
                } else if reached(marks, "host id") {
                    return Err("the host id was lost after it was used".into());
                }
                let secret = keys(d).secret(&device).map_err(|e| format!("{e:#}"))?;
                let (stored, forgetting, forgotten) =
                    (reached(marks, "stored"), reached(marks, "forgetting"), reached(marks, "forgotten"));
                match (secret, stored, forgetting, forgotten) {
                    (Some(s), _, _, false) if s == [9; 32] => Ok(()),
                    (None, false, ..) | (None, _, true, _) => Ok(()),
                    (got, ..) => Err(format!("the key reads {got:?} after {marks:?}")),
                }
            },
        )
        .finish();
        report.assert_clean();
    }
}
