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
use std::io::Write;
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

    fn write_private(&self, path: &Path, text: &str) -> Result<()> {
        self.private_dir(path.parent().unwrap_or(Path::new(".")))?;
        let tmp = path.with_extension("tmp");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
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
        match fs::remove_file(self.key_path(device)) {
            Ok(()) => Ok(true),
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
}
