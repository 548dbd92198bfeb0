//! The key that seals the gallery at rest (`paths.gallery_key`), so that a
//! copied SD card gives no templates. It holds only where the key is off the
//! card: the Raspberry Pi 4/5's one-time-programmable private key rows, read
//! through the firmware's mailbox, or a key file on other storage. A key
//! file on the card itself hides nothing from whoever copies the card, and a
//! Pi 3 / Zero 2 W has no private key rows: there the gallery is as safe as
//! the card.

use anyhow::{Context, Result};
use facegate_site::DataKey;
use sha2::{Digest, Sha256};

/// The key named by `setting` ("" → none).
pub fn gallery_key(setting: &str) -> Result<Option<DataKey>> {
    let raw = match setting {
        "" => return Ok(None),
        "pi-otp" => pi_otp::read_key(&mut pi_otp::Vcio::open()?)?,
        path => {
            let text = std::fs::read_to_string(path).with_context(|| format!("paths.gallery_key: reading {path}"))?;
            facegate_core::from_hex(text.trim()).with_context(|| format!("paths.gallery_key: {path} must hold 64 hex digits"))?
        }
    };
    Ok(Some(derive(&raw)))
}

/// The sealing key from the raw secret (never used as it is elsewhere).
fn derive(raw: &[u8; 32]) -> DataKey {
    let mut h = Sha256::new();
    h.update(b"facegate gallery at rest\0");
    h.update(raw);
    DataKey::from_bytes(h.finalize().into())
}

/// The Pi's customer private key: 8 OTP rows (256 bits), programmed once
/// with `rpi-otp-private-key -w KEY`, read with the firmware's mailbox
/// property 0x00030081.
pub mod pi_otp {
    use anyhow::{bail, Result};

    const GET_PRIVATE_KEY: u32 = 0x0003_0081;
    const RESPONSE_OK: u32 = 0x8000_0000;

    /// The firmware's property mailbox.
    pub trait Mailbox {
        /// Sends a property buffer and lets the firmware answer in place.
        fn call(&mut self, buffer: &mut [u32]) -> std::io::Result<()>;
    }

    /// `/dev/vcio` (the user must be in group `video`).
    pub struct Vcio(std::fs::File);

    impl Vcio {
        /// Opens the mailbox; not a Raspberry Pi: an error that says so.
        pub fn open() -> Result<Self> {
            match std::fs::File::open("/dev/vcio") {
                Ok(f) => Ok(Vcio(f)),
                Err(e) => bail!(
                    "paths.gallery_key = \"pi-otp\": /dev/vcio: {e} (not a Raspberry Pi, or the user is not in group video)"
                ),
            }
        }
    }

    impl Mailbox for Vcio {
        #[cfg(target_os = "linux")]
        fn call(&mut self, buffer: &mut [u32]) -> std::io::Result<()> {
            use std::os::fd::AsRawFd;
            // _IOWR(100, 0, char *): the firmware property call of the vcio driver.
            let request = (3 << 30) | ((std::mem::size_of::<*mut u8>() as u32) << 16) | (100 << 8);
            // SAFETY: the driver reads and writes the buffer in place, its length in its first word.
            let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, buffer.as_mut_ptr()) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }

        #[cfg(not(target_os = "linux"))]
        fn call(&mut self, _buffer: &mut [u32]) -> std::io::Result<()> {
            Err(std::io::Error::other("the Pi's mailbox needs Linux"))
        }
    }

    /// Reads the 8 key rows; a key never programmed (all zero) is an error.
    pub fn read_key(mailbox: &mut impl Mailbox) -> Result<[u8; 32]> {
        // Size, request; the tag, its value buffer (40 bytes) and request size,
        // first row 0, 8 rows, room for them; the end tag.
        let mut buffer = [0u32; 16];
        buffer[0] = (buffer.len() * 4) as u32;
        buffer[2] = GET_PRIVATE_KEY;
        buffer[3] = 40;
        buffer[4] = 40;
        buffer[6] = 8;
        mailbox.call(&mut buffer).map_err(|e| anyhow::anyhow!("reading the Pi's OTP private key: {e}"))?;
        if buffer[1] != RESPONSE_OK || buffer[4] & RESPONSE_OK == 0 {
            bail!("the firmware refused to read the OTP private key (a Pi 4 or 5 with current firmware has it)");
        }
        let mut key = [0u8; 32];
        for (chunk, word) in key.chunks_exact_mut(4).zip(&buffer[7..15]) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        if key == [0; 32] {
            bail!("the Pi's OTP private key was never programmed: `rpi-otp-private-key -w $(openssl rand -hex 32)` (once, for good)");
        }
        Ok(key)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A firmware that answers with `key` rows (or refuses).
        struct Firmware {
            rows: [u32; 8],
            refuse: bool,
            asked: Vec<u32>,
        }

        impl Mailbox for Firmware {
            fn call(&mut self, buffer: &mut [u32]) -> std::io::Result<()> {
                self.asked = buffer.to_vec();
                if !self.refuse {
                    buffer[1] = RESPONSE_OK;
                    buffer[4] = RESPONSE_OK | 40;
                    buffer[7..15].copy_from_slice(&self.rows);
                }
                Ok(())
            }
        }

        #[test]
        fn the_key_rows_are_asked_for_and_read_and_an_unprogrammed_key_is_refused() {
            let rows = [1, 2, 3, 4, 5, 6, 7, 0xdead_beef];
            let mut fw = Firmware { rows, refuse: false, asked: Vec::new() };
            let key = read_key(&mut fw).unwrap();
            assert_eq!(&fw.asked[..7], &[64, 0, GET_PRIVATE_KEY, 40, 40, 0, 8], "the request the firmware expects");
            assert_eq!(fw.asked[15], 0, "the end tag");
            assert_eq!(&key[28..], &0xdead_beef_u32.to_le_bytes());
            let mut blank = Firmware { rows: [0; 8], refuse: false, asked: Vec::new() };
            assert!(read_key(&mut blank).unwrap_err().to_string().contains("never programmed"));
            let mut old = Firmware { rows, refuse: true, asked: Vec::new() };
            assert!(read_key(&mut old).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_gives_a_derived_key_and_bad_settings_are_named() {
        assert!(gallery_key("").unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gallery.key");
        std::fs::write(&file, format!("{}\n", "ab".repeat(32))).unwrap();
        let key = gallery_key(file.to_str().unwrap()).unwrap().unwrap();
        assert_ne!(key.to_bytes(), [0xab; 32], "derived, not the raw secret");
        std::fs::write(&file, "short").unwrap();
        assert!(gallery_key(file.to_str().unwrap()).unwrap_err().to_string().contains("64 hex"));
        if !std::path::Path::new("/dev/vcio").exists() {
            assert!(gallery_key("pi-otp").unwrap_err().to_string().contains("not a Raspberry Pi"));
        }
    }
}
