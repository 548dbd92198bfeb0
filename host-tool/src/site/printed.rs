//! What `host-tool --site … log` has printed of each door's events, kept
//! beside the site file (`SITE.printed`): each (door, seq) is printed once
//! across runs, and what is missing — sent while the broker lost it, or
//! while this tool was away — is known, so the doors can be asked for it.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One door's printed events: all up to `upto`, and some beyond.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoorCursor {
    /// Every event up to here was printed (or is gone from the door's log).
    pub upto: u64,
    /// Printed beyond `upto` (some before them are still missing).
    pub beyond: BTreeSet<u64>,
}

impl DoorCursor {
    /// Records `seq`; false when it was printed before (a duplicate).
    pub fn take(&mut self, seq: u64) -> bool {
        if seq <= self.upto || !self.beyond.insert(seq) {
            return false;
        }
        while self.beyond.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
        true
    }

    /// The door's log begins at `first`: what is older can never come.
    /// Returns how many events were never printed.
    pub fn forget_before(&mut self, first: u64) -> u64 {
        let mut gone = 0;
        if self.upto + 1 < first {
            // Counted, not walked: `first` comes from a door's status.
            let printed = self.beyond.range(..first).count() as u64;
            gone = first - 1 - self.upto - printed;
            self.beyond = self.beyond.split_off(&first);
            self.upto = first - 1;
        }
        while self.beyond.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
        gone
    }

    /// Everything up to the door's newest, `last`, was printed: what a
    /// one-off `log` waits for. (Not [`missing_from`](Self::missing_from):
    /// an event far beyond the door's newest, which a door's login can
    /// publish on its own topic, would keep that waiting forever.)
    pub fn printed_to(&self, last: u64) -> bool {
        self.upto >= last
    }

    /// The first event missing when the door's newest is `last` (or when
    /// later ones were printed), if any.
    pub fn missing_from(&self, last: u64) -> Option<u64> {
        (self.upto < last.max(self.beyond.last().copied().unwrap_or(0))).then_some(self.upto + 1)
    }
}

/// Every door's cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Printed {
    doors: BTreeMap<String, DoorCursor>,
}

fn path(site: &Path) -> PathBuf {
    site.with_extension("printed")
}

impl Printed {
    /// Reads the cursors beside `site` (none yet: nothing printed).
    pub fn load(site: &Path) -> Result<Self> {
        match std::fs::read(path(site)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged (delete it to print every event again)", path(site).display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Printed::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path(site).display())),
        }
    }

    /// Saves the cursors atomically.
    pub fn save(&self, site: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("the cursors serialise");
        facegate_store::atomic::replace(&path(site), &bytes, false).with_context(|| format!("saving {}", path(site).display()))
    }

    /// One door's cursor.
    pub fn door(&mut self, door: &str) -> &mut DoorCursor {
        self.doors.entry(door.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seq_is_taken_once_and_gaps_are_known_until_filled_or_gone() {
        let mut c = DoorCursor::default();
        assert_eq!(c.missing_from(0), None);
        assert_eq!(c.missing_from(3), Some(1), "the door has 1-3, none printed");
        assert!(c.take(1) && c.take(3));
        assert!(!c.take(1) && !c.take(3), "duplicates");
        assert_eq!((c.upto, c.missing_from(0)), (1, Some(2)), "3 came, 2 did not");
        assert!(c.take(2));
        assert_eq!((c.upto, c.missing_from(3)), (3, None));
        assert!(c.take(7));
        assert_eq!(c.forget_before(6), 2, "4 and 5 left the door's log unprinted");
        assert_eq!((c.upto, c.missing_from(7)), (5, Some(6)), "6 is still in the door's log");
        assert!(c.take(6));
        assert_eq!((c.upto, c.missing_from(7)), (7, None), "7 was printed: the cursor joins it");
        assert_eq!(c.forget_before(2), 0, "an older start changes nothing");
        // An event far beyond the door's newest leaves a gap to ask for,
        // but everything up to the newest is printed: a one-off log ends.
        assert!(c.take(1_000_000));
        assert!(c.printed_to(7) && !c.printed_to(8));
        assert_eq!(c.missing_from(7), Some(8));
        // A log said to begin near 2^53 is counted at once, not walked to.
        let mut far = c.clone();
        assert_eq!(far.forget_before(1 << 53), (1 << 53) - 8 - 1, "all but the one printed beyond");
        assert_eq!((far.upto, far.beyond.len()), ((1 << 53) - 1, 0));
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("hq.toml");
        let mut p = Printed::load(&site).unwrap();
        *p.door("front") = c.clone();
        p.save(&site).unwrap();
        assert_eq!(Printed::load(&site).unwrap().door("front"), &c);
        std::fs::write(path(&site), b"{garbage").unwrap();
        assert!(Printed::load(&site).unwrap_err().to_string().contains("damaged"));
    }
}
