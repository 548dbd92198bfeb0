//! The access log: a bounded ring of fixed-size, checksummed records.
//!
//! File (`FGAL` v1): a 32-byte header (magic, version, capacity, record size),
//! then `capacity` slots of 64 bytes. Event number `seq` (from 1) lives in slot
//! `(seq − 1) % capacity`, so the oldest event is overwritten when the ring is
//! full. Each append writes one slot and syncs it: a power cut can only tear
//! the slot being written, which its CRC then rejects; every earlier event
//! stays readable.

use crate::positional::read_exact_at;
use crate::{disk, io, Result, StoreError};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"FGAL";
const VERSION: u32 = 1;
const HEADER: u64 = 32;
const RECORD: usize = 64;
const NAME_BYTES: usize = 24;

/// ISO 8601 UTC time of a millisecond timestamp (no time-zone database needed).
pub fn iso_time(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Milliseconds since the epoch of an RFC 3339 time or a shorter form of it:
/// `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fff]]` (a space may stand for the
/// `T`) followed by nothing or `Z` (UTC) or an offset `±HH:MM`, which is
/// applied. Anything else is refused, never half read: a time whose minutes
/// or offset cannot be read is `None`, not midnight or UTC.
pub fn parse_iso_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (year, month, day) = parse_date(date)?;
    let (seconds_of_day, offset_s) = match rest {
        None => (0.0, 0),
        Some(rest) => {
            // The zone: `Z`, `±HH:MM`, or nothing (UTC).
            let (clock, offset_s) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
                (clock, 0)
            } else if let Some(i) = rest.rfind(['+', '-']) {
                (&rest[..i], parse_offset(&rest[i..])?)
            } else {
                (rest, 0)
            };
            (parse_clock(clock)?, offset_s)
        }
    };
    // Days since the epoch of a civil date (H. Hinnant's algorithm, inverse of iso_time).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000 + (seconds_of_day * 1000.0).round() as i64 - offset_s * 1000)
}

/// A field of exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// `YYYY-MM-DD` with a day that exists in that month.
fn parse_date(text: &str) -> Option<(i64, i64, i64)> {
    let mut parts = text.split('-');
    let (year, month, day) = (digits(parts.next()?, 4)?, digits(parts.next()?, 2)?, digits(parts.next()?, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (parts.next().is_none() && (1..=days_in_month).contains(&day)).then_some((year, month, day))
}

/// `HH:MM[:SS[.fff]]` as seconds since midnight.
fn parse_clock(text: &str) -> Option<f64> {
    let mut parts = text.split(':');
    let (hour, minute) = (digits(parts.next()?, 2)?, digits(parts.next()?, 2)?);
    let second = match parts.next() {
        None => 0.0,
        Some(s) => {
            // `SS` or `SS.f…`: two digits, then a point only with digits after it.
            let (whole, fraction) = s.split_once('.').unwrap_or((s, "0"));
            if digits(whole, 2).is_none() || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<f64>().ok()?
        }
    };
    // 60 is a leap second, as RFC 3339 allows.
    (parts.next().is_none() && hour <= 23 && minute <= 59 && second < 61.0).then_some((hour * 3600 + minute * 60) as f64 + second)
}

/// `±HH:MM` as seconds east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = text[1..].split_once(':')?;
    let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
}

/// Default capacity: 100,000 events (6.4 MB).
pub const DEFAULT_CAPACITY: u32 = 100_000;

/// Declares the event kinds once: the enum, the code table and the JSON names
/// stay in step (codes are positions: append new kinds at the end only).
macro_rules! event_kinds {
    ($($(#[doc = $doc:literal])* $kind:ident => $name:literal,)*) => {
        /// What happened.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum EventKind {
            $($(#[doc = $doc])* $kind,)*
        }

        /// Every kind, in code order.
        const KINDS: &[EventKind] = &[$(EventKind::$kind,)*];

        impl EventKind {
            /// Lower-case name used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    /// An enrolled person was recognised and the door unlocked.
    Granted => "granted",
    /// A recognised person was refused (e.g. outside their hours, or too few frames agreed).
    Denied => "denied",
    /// A face that matches nobody (a stranger): distance only, never an image.
    Unknown => "unknown",
    /// The exit button unlocked the door.
    Exit => "exit",
    /// The door stayed open too long.
    DoorHeld => "door-held",
    /// Something failed (camera, model, storage); the door stayed locked.
    Error => "error",
    /// An authenticated remote unlock from the host tool (name: the host).
    RemoteUnlock => "remote-unlock",
    /// A host was paired in setup mode (name: the host).
    Paired => "paired",
    /// A host was unpaired (name: the host).
    Unpaired => "unpaired",
    /// A provisioning request was refused: bad MAC, replay, unpaired host (name: the reason and host).
    Refused => "refused",
    /// A person was enrolled or given more templates (name: the person).
    Enrolled => "enrolled",
    /// A person was removed (name: the person).
    Removed => "removed",
    /// A person was renamed (name: the new name).
    Renamed => "renamed",
    /// A setting was changed (name: the key).
    ConfigChanged => "config-changed",
    /// The gallery was restored from a backup.
    Restored => "restored",
    /// The log was cleared (the first event of the new log).
    LogCleared => "log-cleared",
    /// A recognised face that is not live (a print or a screen): never unlocks
    /// (person, distance and live score recorded).
    Spoof => "spoof",
    /// A recognised person in no group this door allows (site rules).
    DeniedGroup => "denied-group",
    /// A recognised person outside every schedule that applies now (site rules).
    DeniedSchedule => "denied-schedule",
    /// A recognised person outside their validity window (site rules).
    DeniedExpired => "denied-expired",
    /// The door applied a new site version (name: the version).
    SiteSynced => "site-synced",
}

impl EventKind {
    /// Stable one-byte code (on disk and on the wire).
    pub fn code(self) -> u8 {
        self as u8 + 1
    }
    /// The kind of a code; `None` for codes this build does not know.
    pub fn from_code(c: u8) -> Option<Self> {
        KINDS.get((c as usize).checked_sub(1)?).copied()
    }
}

/// One logged event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Sequence number, increasing, from 1 (set by [`AccessLog::append`]).
    pub seq: u64,
    /// Time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Gallery id of the person concerned, if any.
    pub person: Option<u32>,
    /// Their name at the time (truncated to 24 bytes), if any.
    pub name: Option<String>,
    /// Best face distance, if a face was compared.
    pub distance: Option<f32>,
    /// Frames the decision used.
    pub frames: u16,
    /// The fused live score of those frames, when liveness was checked.
    pub live: Option<f32>,
}

impl Event {
    /// An event of `kind` now-ish; fill the other fields as needed.
    pub fn new(kind: EventKind, time_ms: i64) -> Self {
        Event { seq: 0, time_ms, kind, person: None, name: None, distance: None, frames: 0, live: None }
    }

    /// The JSON form, the same on the device's `--events-json` stream and in
    /// `host-tool log --json`: kind, person, person_id, distance, frames, time
    /// (ISO 8601 UTC) and seq (left out while the event is not logged yet).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "kind": self.kind.as_str(),
            "person": self.name,
            "person_id": self.person,
            "distance": self.distance,
            "frames": self.frames,
            "time": iso_time(self.time_ms),
        });
        if self.seq > 0 {
            v["seq"] = self.seq.into();
        }
        if let Some(live) = self.live {
            v["live"] = live.into();
        }
        v
    }

    fn encode(&self) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[0..8].copy_from_slice(&self.seq.to_le_bytes());
        r[8..16].copy_from_slice(&self.time_ms.to_le_bytes());
        r[16] = self.kind.code();
        // Bytes 17..20 were zero before live scores: a flag, then the score in 1/65535.
        if let Some(live) = self.live {
            r[17] = 1;
            r[18..20].copy_from_slice(&((live.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes());
        }
        r[20..24].copy_from_slice(&self.person.unwrap_or(u32::MAX).to_le_bytes());
        r[24..28].copy_from_slice(&self.distance.unwrap_or(f32::NAN).to_le_bytes());
        r[28..30].copy_from_slice(&self.frames.to_le_bytes());
        if let Some(name) = &self.name {
            // Truncate on a character boundary.
            let mut end = name.len().min(NAME_BYTES);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            r[32..32 + end].copy_from_slice(&name.as_bytes()[..end]);
            r[31] = end as u8;
        }
        let crc = crc32fast::hash(&r[..RECORD - 4]);
        r[RECORD - 4..].copy_from_slice(&crc.to_le_bytes());
        r
    }

    fn decode(r: &[u8]) -> Option<Self> {
        let crc = u32::from_le_bytes(r[RECORD - 4..].try_into().ok()?);
        let seq = u64::from_le_bytes(r[0..8].try_into().ok()?);
        if seq == 0 || crc32fast::hash(&r[..RECORD - 4]) != crc {
            return None;
        }
        let person = u32::from_le_bytes(r[20..24].try_into().ok()?);
        let distance = f32::from_le_bytes(r[24..28].try_into().ok()?);
        let name_len = (r[31] as usize).min(NAME_BYTES);
        Some(Event {
            seq,
            time_ms: i64::from_le_bytes(r[8..16].try_into().ok()?),
            kind: EventKind::from_code(r[16])?,
            person: (person != u32::MAX).then_some(person),
            name: (name_len > 0).then(|| String::from_utf8_lossy(&r[32..32 + name_len]).into_owned()),
            distance: (!distance.is_nan()).then_some(distance),
            frames: u16::from_le_bytes(r[28..30].try_into().ok()?),
            live: (r[17] == 1).then(|| u16::from_le_bytes([r[18], r[19]]) as f32 / 65535.0),
        })
    }
}

/// An open access log.
pub struct AccessLog {
    file: File,
    path: PathBuf,
    capacity: u32,
    next_seq: u64,
}

impl AccessLog {
    /// Opens the log, creating it with `capacity` slots when missing.
    pub fn open(path: &Path, capacity: u32) -> Result<Self> {
        let format = |why: &str| StoreError::Format { path: path.to_path_buf(), why: why.to_string() };
        if capacity == 0 {
            return Err(StoreError::Invalid("log capacity must be at least 1".into()));
        }
        let fresh = match std::fs::metadata(path) {
            Ok(m) => m.len() == 0 || Self::never_started(path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(io(path)(e)),
        };
        if fresh {
            Self::create(path, capacity)?;
        }
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
        let mut header = [0u8; HEADER as usize];
        read_exact_at(&file, &mut header, 0).map_err(|_| format("shorter than its header"))?;
        if &header[..4] != MAGIC {
            return Err(format("not a facegate access log"));
        }
        if u32::from_le_bytes(header[4..8].try_into().expect("4")) != VERSION {
            return Err(format("unsupported access log version"));
        }
        let capacity = u32::from_le_bytes(header[8..12].try_into().expect("4"));
        if capacity == 0 || u32::from_le_bytes(header[12..16].try_into().expect("4")) != RECORD as u32 {
            return Err(format("damaged header"));
        }
        // The header's capacity is checked against the file before anything
        // is sized by it (a damaged one asked for 80 GB: found by fuzzing).
        let size = file.metadata().map_err(io(path))?.len();
        if size < HEADER + capacity as u64 * RECORD as u64 {
            return Err(format(&format!("damaged header: {capacity} slots do not fit in {size} bytes")));
        }
        let mut log = AccessLog { file, path: path.to_path_buf(), capacity, next_seq: 1 };
        log.next_seq = log.events_since(0)?.last().map_or(1, |e| e.seq + 1);
        Ok(log)
    }

    /// Whether the file is all zeros: a log whose creation a power cut
    /// interrupted (older versions sized the file before writing its
    /// header). Nothing was ever appended to it; anything else is kept.
    fn never_started(path: &Path) -> Result<bool> {
        use std::io::Read;
        let mut file = File::open(path).map_err(io(path))?;
        // A log's header starts with its magic: the usual open reads no further.
        let mut header = [0u8; HEADER as usize];
        if read_exact_at(&file, &mut header, 0).is_ok() && header.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match file.read(&mut chunk).map_err(io(path))? {
                0 => return Ok(true),
                n if chunk[..n].iter().any(|&b| b != 0) => return Ok(false),
                _ => {}
            }
        }
    }

    /// Makes an empty log of `capacity` slots beside `path` and renames it
    /// into place, the directory synced: a power cut leaves no log or a whole
    /// empty one, and the log's name is durable before anything is appended.
    fn create(path: &Path, capacity: u32) -> Result<()> {
        let mut header = [0u8; HEADER as usize];
        header[..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&capacity.to_le_bytes());
        header[12..16].copy_from_slice(&(RECORD as u32).to_le_bytes());
        let new = crate::atomic::sibling(path, ".new");
        let file = disk::create_truncated(&new, false).map_err(io(&new))?;
        disk::set_len(&file, &new, HEADER + capacity as u64 * RECORD as u64)
            .and_then(|_| disk::write_at(&file, &new, &header, 0))
            .and_then(|_| disk::sync(&file, &new))
            .map_err(io(&new))?;
        disk::rename(&new, path).map_err(io(path))?;
        disk::sync_dir(disk::parent(path)).map_err(io(path))
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Appends an event durably (written and synced before returning); returns its sequence number.
    pub fn append(&mut self, event: &Event) -> Result<u64> {
        let mut e = event.clone();
        e.seq = self.next_seq;
        self.write(&e)
    }

    /// Appends an event under the sequence number it already carries (given
    /// by the log's writer thread when it was queued),
    /// durably. The number must be past the newest; numbers skipped (an
    /// append that failed) stay gaps.
    pub fn append_numbered(&mut self, event: &Event) -> Result<u64> {
        if event.seq < self.next_seq {
            return Err(StoreError::Invalid(format!("event {} is not past the newest ({})", event.seq, self.last_seq())));
        }
        self.write(event)
    }

    fn write(&mut self, e: &Event) -> Result<u64> {
        let slot = (e.seq - 1) % self.capacity as u64;
        let path = &self.path;
        disk::write_at(&self.file, path, &e.encode(), HEADER + slot * RECORD as u64)
            .and_then(|_| disk::sync(&self.file, path))
            .map_err(io(path))?;
        self.next_seq = e.seq + 1;
        Ok(e.seq)
    }

    /// Every readable event with `seq > after`, oldest first.
    pub fn events_since(&self, after: u64) -> Result<Vec<Event>> {
        let mut all = vec![0u8; self.capacity as usize * RECORD];
        read_exact_at(&self.file, &mut all, HEADER).map_err(io(&self.path))?;
        let mut events: Vec<Event> = all.chunks_exact(RECORD).filter_map(Event::decode).filter(|e| e.seq > after).collect();
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// The oldest events with `seq > after` still in the ring, at most
    /// `at_most` sequence numbers' worth, reading only their slots (the
    /// outbox's batches). Events the ring overwrote or a power cut damaged
    /// are absent.
    pub fn events_after(&self, after: u64, at_most: usize) -> Result<Vec<Event>> {
        let (last, capacity) = (self.last_seq(), self.capacity as u64);
        let first = (after + 1).max(self.first_seq());
        let end = last.min((first + at_most as u64).saturating_sub(1));
        let mut out = Vec::new();
        let mut seq = first;
        while seq <= end {
            // One read per contiguous run of slots: at most two (the ring wraps once).
            let slot = (seq - 1) % capacity;
            let n = (end - seq + 1).min(capacity - slot);
            let mut buf = vec![0u8; n as usize * RECORD];
            read_exact_at(&self.file, &mut buf, HEADER + slot * RECORD as u64).map_err(io(&self.path))?;
            let range = seq..seq + n;
            out.extend(buf.chunks_exact(RECORD).filter_map(Event::decode).filter(|e| range.contains(&e.seq)));
            seq += n;
        }
        Ok(out)
    }

    /// The oldest sequence number the ring can still hold (1 until it wrapped).
    pub fn first_seq(&self) -> u64 {
        (self.last_seq() + 1).saturating_sub(self.capacity as u64).max(1)
    }

    /// Sequence number of the newest event (0 when none was ever logged).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Erases every event (sequence numbers keep increasing).
    pub fn clear(&mut self) -> Result<()> {
        let zeros = vec![0u8; self.capacity as usize * RECORD];
        disk::write_at(&self.file, &self.path, &zeros, HEADER)
            .and_then(|_| disk::sync(&self.file, &self.path))
            .map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `tests/power-loss/run.sh`: older versions sized the file
    /// before writing its header, and a cut between left zeros that the door
    /// refused at every start. Such a file is started again; one holding
    /// anything else is still refused.
    #[test]
    fn a_log_whose_creation_was_cut_starts_again_and_damage_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, vec![0u8; HEADER as usize + 4 * RECORD]).unwrap();
        let mut log = AccessLog::open(&path, 4).expect("an all-zero log is one whose creation was cut");
        assert_eq!(log.append(&event(1)).unwrap(), 1);
        let mut damaged = vec![0u8; HEADER as usize + 4 * RECORD];
        damaged[HEADER as usize + 3] = 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(AccessLog::open(&path, 4).is_err(), "a zero header over data is damage, not a new log");
        assert!(!crate::atomic::sibling(&path, ".new").exists(), "the new log was renamed into place");
    }

    /// Found by `tests/fuzz/run.sh access_log` (kept in tests/fuzz/regressions):
    /// a header whose capacity the file cannot hold is refused, not allocated.
    #[test]
    fn a_header_claiming_more_slots_than_the_file_holds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut header = MAGIC.to_vec();
        header.extend(VERSION.to_le_bytes());
        header.extend(0x4fff_ffffu32.to_le_bytes());
        header.extend((RECORD as u32).to_le_bytes());
        header.resize(HEADER as usize + 3 * RECORD, 0);
        std::fs::write(&path, &header).unwrap();
        let err = AccessLog::open(&path, 64).err().expect("refused");
        assert!(err.to_string().contains("do not fit"), "{err}");
    }

    fn event(i: i64) -> Event {
        Event {
            seq: 0,
            time_ms: 1_700_000_000_000 + i,
            kind: if i % 2 == 0 { EventKind::Granted } else { EventKind::Unknown },
            person: (i % 2 == 0).then_some(i as u32),
            name: (i % 2 == 0).then(|| format!("person number {i} with a long name")),
            distance: Some(0.3 + i as f32 / 1000.0),
            frames: 3,
            live: (i % 3 == 0).then_some(i as f32 / 1000.0),
        }
    }

    #[test]
    fn iso_time_is_utc_and_parses_back() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_795_824_000_123), "2026-11-28T00:00:00.123Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for ms in [0, 1_795_824_000_123, 951_782_400_000, 1_700_000_123_456] {
            assert_eq!(parse_iso_time(&iso_time(ms)), Some(ms));
        }
        assert_eq!(parse_iso_time("2026-11-28"), Some(1_795_824_000_000));
        assert_eq!(parse_iso_time("2026-11-28T01:02"), Some(1_795_824_000_000 + 3_720_000));
        assert_eq!(parse_iso_time("2026-13-01"), None);
        assert_eq!(parse_iso_time("yesterday"), None);
    }

    #[test]
    fn times_with_offsets_are_applied_and_anything_half_readable_is_refused() {
        let utc = parse_iso_time("2026-11-28T18:30:00Z").unwrap();
        assert_eq!(parse_iso_time("2026-11-28T18:30:00+01:00"), Some(utc - 3_600_000), "18:30 in UTC+1 is 17:30 UTC");
        assert_eq!(parse_iso_time("2026-11-28T18:30-05:30"), Some(utc + 5 * 3_600_000 + 1_800_000));
        assert_eq!(parse_iso_time("2026-11-28 18:30"), Some(utc), "a space for the T, no zone: UTC");
        assert_eq!(parse_iso_time("2026-11-28T18:30:00.250Z"), Some(utc + 250));
        assert_eq!(parse_iso_time("2016-12-31T23:59:60Z"), parse_iso_time("2017-01-01T00:00:00Z"), "a leap second");
        for bad in [
            "2026-11-28T18:3x",
            "2026-11-28T18:30:00+01",
            "2026-11-28T18:30:00+1:00",
            "2026-11-28T18:30:00 UTC",
            "2026-11-28T18",
            "2026-11-28T18:30:00.",
            "2026-11-28T24:00",
            "2026-02-30",
            "2025-02-29",
            "2026-1-5",
            "2026-11-28T18:30:00Zjunk",
            "+2026-11-28",
            "",
        ] {
            assert_eq!(parse_iso_time(bad), None, "{bad:?} is refused");
        }
        assert!(parse_iso_time("2024-02-29").is_some(), "a leap day");
    }

    #[test]
    fn kind_codes_round_trip_and_names_are_distinct() {
        let names: std::collections::HashSet<_> = KINDS.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), KINDS.len());
        for &k in KINDS {
            assert_eq!(EventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(EventKind::from_code(0), None);
        assert_eq!(EventKind::from_code(KINDS.len() as u8 + 1), None);
    }

    #[test]
    fn ring_keeps_the_newest_events_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = AccessLog::open(&path, 5).unwrap();
        for i in 0..8 {
            assert_eq!(log.append(&event(i)).unwrap(), i as u64 + 1);
        }
        drop(log);
        let log = AccessLog::open(&path, 999).unwrap();
        assert_eq!(log.capacity(), 5, "capacity comes from the file");
        let events = log.events_since(0).unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8]);
        assert_eq!(events[1].kind, EventKind::Granted);
        assert_eq!(events[1].name.as_deref(), Some("person number 4 with a l"), "truncated to 24 bytes");
        assert_eq!(events[0].person, None);
        assert_eq!(log.events_since(6).unwrap().len(), 2);
        // Live scores survive to 1/65535; events without one stay without.
        assert!((events[3].live.unwrap() - 0.006).abs() < 2e-5 && events[2].live.is_none(), "{:?}", &events[2..4]);
    }

    #[test]
    fn a_batch_after_a_seq_reads_across_the_wrap_and_skips_what_was_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AccessLog::open(&dir.path().join("log"), 5).unwrap();
        for i in 0..8 {
            log.append(&event(i)).unwrap();
        }
        let seqs = |after, n| log.events_after(after, n).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(0, 100), vec![4, 5, 6, 7, 8], "1-3 were overwritten");
        assert_eq!(seqs(4, 3), vec![5, 6, 7], "slots 5, 1, 2: across the wrap");
        assert_eq!(seqs(3, 1), vec![4]);
        assert_eq!(seqs(8, 10), Vec::<u64>::new(), "nothing after the newest");
        assert_eq!(seqs(0, 2), vec![4, 5], "1-3 are gone: the batch starts at the oldest kept");
        assert_eq!(seqs(0, 0), Vec::<u64>::new());
        for after in 0..9 {
            let all: Vec<u64> = log.events_since(after).unwrap().iter().map(|e| e.seq).collect();
            assert_eq!(seqs(after, 100), all, "the same as reading the whole ring");
        }
    }

    #[test]
    fn a_torn_record_is_skipped_and_the_rest_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = AccessLog::open(&path, 10).unwrap();
        for i in 0..4 {
            log.append(&event(i)).unwrap();
        }
        drop(log);
        // Tear the third record as a power cut mid-write would.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER as usize + 2 * RECORD + 10] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut log = AccessLog::open(&path, 10).unwrap();
        assert_eq!(log.events_since(0).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(log.append(&event(9)).unwrap(), 5, "numbering continues after the newest readable event");
        log.clear().unwrap();
        assert!(log.events_since(0).unwrap().is_empty());
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, b"this is not a log at all, but it is long enough").unwrap();
        assert!(matches!(AccessLog::open(&path, 10), Err(StoreError::Format { .. })));
    }
}
