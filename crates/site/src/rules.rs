//! Who may pass which door when: access groups, doors, weekly schedules and
//! validity windows, and the one function that decides.
//!
//! A recognised (and live) person is granted at a door only when they are
//! inside their validity window, in a group the door allows, and inside that
//! group's and that door's schedules, read in the site's time zone.

use crate::SiteError;
use chrono::{Datelike, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

/// One person's access: the groups they belong to and when they are valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Access {
    /// Access groups (names in [`Rules::groups`]).
    pub groups: BTreeSet<String>,
    /// Not valid before this time (Unix seconds).
    pub valid_from: Option<i64>,
    /// Not valid from this time on (Unix seconds).
    pub valid_until: Option<i64>,
}

/// An access group: whom a door lets in, and when (a schedule of the site, or always).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Group {
    /// The schedule the group's members pass in; `None`: at any time.
    pub schedule: Option<String>,
}

/// A door of the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Door {
    /// The groups this door lets in.
    pub groups: BTreeSet<String>,
    /// When the door lets anybody in; `None`: at any time.
    pub schedule: Option<String>,
}

/// A weekly schedule: the union of its windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Schedule {
    /// The windows, e.g. `mon-fri 07:00-19:00`.
    pub windows: Vec<WeeklyWindow>,
}

/// Some days of the week and a time of day, e.g. `mon-fri 07:00-19:00`,
/// `sat,sun 09:00-13:00`, `fri 22:00-06:00` (ending the next morning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyWindow {
    /// Bit 0 = Monday … bit 6 = Sunday: the days the window starts on.
    pub days: u8,
    /// Start, minutes after local midnight.
    pub from_minute: u16,
    /// End (exclusive), minutes after local midnight; at or before the start
    /// means the window ends on the next day.
    pub until_minute: u16,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl WeeklyWindow {
    /// Whether local weekday `day` (0 = Monday) at `minute` after midnight is inside.
    pub fn contains(&self, day: u32, minute: u16) -> bool {
        let starts_on = |d: u32| self.days & (1 << (d % 7)) != 0;
        if self.from_minute < self.until_minute {
            starts_on(day) && (self.from_minute..self.until_minute).contains(&minute)
        } else {
            (starts_on(day) && minute >= self.from_minute) || (starts_on(day + 6) && minute < self.until_minute)
        }
    }
}

fn parse_minute(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn parse_days(s: &str) -> Option<u8> {
    let day = |name: &str| DAY_NAMES.iter().position(|d| *d == name);
    let mut days = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day(part)?,
        }
    }
    Some(days)
}

impl FromStr for WeeklyWindow {
    type Err = SiteError;
    fn from_str(s: &str) -> Result<Self, SiteError> {
        let bad = || SiteError::Invalid(format!("schedule window {s:?}: expected e.g. \"mon-fri 07:00-19:00\""));
        let lower = s.trim().to_ascii_lowercase();
        let (days, times) = lower.split_once(' ').ok_or_else(bad)?;
        let days = if days == "daily" { 0x7f } else { parse_days(days).ok_or_else(bad)? };
        let (from, until) = times.trim().split_once('-').ok_or_else(bad)?;
        let (from_minute, until_minute) = (parse_minute(from).ok_or_else(bad)?, parse_minute(until).ok_or_else(bad)?);
        if from_minute == until_minute {
            return Err(SiteError::Invalid(format!("schedule window {s:?} is empty (use 00:00-24:00 for a whole day)")));
        }
        Ok(WeeklyWindow { days, from_minute, until_minute })
    }
}

impl std::fmt::Display for WeeklyWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<&str> = (0..7).filter(|d| self.days & (1 << d) != 0).map(|d| DAY_NAMES[d]).collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{} {}-{}", days.join(","), hm(self.from_minute), hm(self.until_minute))
    }
}

/// Why a recognised person was refused at a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Denial {
    /// Outside their validity window (expired, or not yet valid).
    Expired,
    /// In no group the door allows.
    Group,
    /// In an allowed group, but outside every schedule that applies now.
    Schedule,
}

impl Denial {
    /// The access-log event kind: `denied-expired`, `denied-group`, `denied-schedule`.
    pub fn event_kind(self) -> &'static str {
        match self {
            Denial::Expired => "denied-expired",
            Denial::Group => "denied-group",
            Denial::Schedule => "denied-schedule",
        }
    }
}

/// Which doors are sent a person's record, and so recognise them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DoorsKnow {
    /// Only the doors that admit one of the person's groups: elsewhere they
    /// are a stranger (`unknown`), and a stolen door holds the fewest faces.
    #[default]
    Admitted,
    /// Every door of the site: a door that does not admit a person still
    /// knows them and logs their attempt by name (`denied-group`).
    Everyone,
}

impl DoorsKnow {
    /// The setting's word: `admitted` or `everyone`.
    pub fn as_str(self) -> &'static str {
        match self {
            DoorsKnow::Admitted => "admitted",
            DoorsKnow::Everyone => "everyone",
        }
    }
}

impl FromStr for DoorsKnow {
    type Err = SiteError;
    fn from_str(s: &str) -> Result<Self, SiteError> {
        match s {
            "admitted" => Ok(DoorsKnow::Admitted),
            "everyone" => Ok(DoorsKnow::Everyone),
            _ => Err(SiteError::Invalid(format!("doors know {s:?}: expected admitted or everyone"))),
        }
    }
}

/// The site's access rules: everything a door needs to decide, but the faces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Rules {
    /// IANA time zone the schedules are read in, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// Access groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Doors by name.
    pub doors: BTreeMap<String, Door>,
    /// Schedules by name.
    pub schedules: BTreeMap<String, Schedule>,
}

impl Rules {
    /// Checks that every name used is defined and the time zone is known.
    pub fn validate(&self) -> Result<(), SiteError> {
        self.zone()?;
        let schedule = |s: &Option<String>, whose: &str| match s {
            Some(s) if !self.schedules.contains_key(s) => Err(SiteError::Invalid(format!("{whose} uses unknown schedule {s:?}"))),
            _ => Ok(()),
        };
        for (name, g) in &self.groups {
            schedule(&g.schedule, &format!("group {name:?}"))?;
        }
        for (name, d) in &self.doors {
            schedule(&d.schedule, &format!("door {name:?}"))?;
            if let Some(g) = d.groups.iter().find(|g| !self.groups.contains_key(*g)) {
                return Err(SiteError::Invalid(format!("door {name:?} allows unknown group {g:?}")));
            }
        }
        Ok(())
    }

    /// A wall-clock time in the site's time zone (`2026-12-07T10:00`) as
    /// Unix seconds; a time a clock change skips is refused, one it repeats
    /// is its first occurrence.
    pub fn local_time(&self, text: &str) -> Result<i64, SiteError> {
        let bad = || SiteError::Invalid(format!("{text:?}: give a date and time like 2026-12-07T10:00"));
        let naive = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(text.trim(), f).ok())
            .ok_or_else(bad)?;
        let local = self.zone()?.from_local_datetime(&naive).earliest();
        local.map(|t| t.timestamp()).ok_or_else(|| SiteError::Invalid(format!("{text} does not occur in {}", self.time_zone)))
    }

    fn zone(&self) -> Result<chrono_tz::Tz, SiteError> {
        self.time_zone.parse().map_err(|_| SiteError::Invalid(format!("unknown time zone {:?}", self.time_zone)))
    }

    fn in_schedule(&self, name: &Option<String>, day: u32, minute: u16) -> bool {
        match name {
            None => true,
            // An unknown schedule admits nobody: a rule that cannot be read fails secure.
            Some(s) => self.schedules.get(s).is_some_and(|s| s.windows.iter().any(|w| w.contains(day, minute))),
        }
    }

    /// The doors sent the record of a person with `access`: those admitting
    /// them, or every door.
    pub fn doors_knowing<'a>(&'a self, access: &'a Access, know: DoorsKnow) -> impl Iterator<Item = &'a str> + 'a {
        self.doors
            .iter()
            .filter(move |(_, d)| know == DoorsKnow::Everyone || !d.groups.is_disjoint(&access.groups))
            .map(|(name, _)| name.as_str())
    }

    /// Whether `access` lets its holder through `door` at `now` (Unix seconds).
    /// An unknown door, group or time zone denies.
    pub fn decide(&self, door: &str, access: &Access, now: i64) -> Result<(), Denial> {
        if access.valid_from.is_some_and(|t| now < t) || access.valid_until.is_some_and(|t| now >= t) {
            return Err(Denial::Expired);
        }
        let Some(d) = self.doors.get(door) else { return Err(Denial::Group) };
        let groups: Vec<&Group> = access.groups.intersection(&d.groups).filter_map(|g| self.groups.get(g)).collect();
        if groups.is_empty() {
            return Err(Denial::Group);
        }
        let Ok(zone) = self.zone() else { return Err(Denial::Schedule) };
        let Some(local) = zone.timestamp_opt(now, 0).single() else { return Err(Denial::Schedule) };
        let (day, minute) = (local.weekday().num_days_from_monday(), (local.hour() * 60 + local.minute()) as u16);
        let open =
            self.in_schedule(&d.schedule, day, minute) && groups.iter().any(|g| self.in_schedule(&g.schedule, day, minute));
        if open {
            Ok(())
        } else {
            Err(Denial::Schedule)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> WeeklyWindow {
        s.parse().unwrap()
    }

    /// 2026-11-30 is a Monday; Europe/Paris is UTC+1 in winter.
    fn paris(day: i64, h: i64, m: i64) -> i64 {
        1_795_993_200 + day * 86_400 + h * 3600 + m * 60
    }

    fn site() -> Rules {
        let mut r = Rules { time_zone: "Europe/Paris".into(), ..Rules::default() };
        r.schedules.insert("office".into(), Schedule { windows: vec![w("mon-fri 07:00-19:00")] });
        r.schedules.insert("night".into(), Schedule { windows: vec![w("daily 22:00-06:00")] });
        r.groups.insert("staff".into(), Group { schedule: Some("office".into()) });
        r.groups.insert("guards".into(), Group { schedule: None });
        r.groups.insert("cleaners".into(), Group { schedule: Some("night".into()) });
        let allow = |g: &[&str]| g.iter().map(|s| s.to_string()).collect();
        r.doors.insert("front".into(), Door { groups: allow(&["staff", "guards", "cleaners"]), schedule: None });
        r.doors.insert("lab".into(), Door { groups: allow(&["staff"]), schedule: None });
        r.validate().unwrap();
        r
    }

    fn member(groups: &[&str]) -> Access {
        Access { groups: groups.iter().map(|s| s.to_string()).collect(), ..Access::default() }
    }

    #[test]
    fn a_wall_clock_time_is_read_in_the_sites_zone() {
        let paris = Rules { time_zone: "Europe/Paris".into(), ..Rules::default() };
        // 2026-12-07 10:00 in Paris (UTC+1) is 09:00 UTC.
        assert_eq!(paris.local_time("2026-12-07T10:00").unwrap(), 1_796_634_000);
        assert_eq!(paris.local_time("2026-12-07 10:00").unwrap(), 1_796_634_000);
        assert!(paris.local_time("2026-03-29T02:30").is_err(), "skipped by the clock change");
        assert!(paris.local_time("tomorrow").is_err());
    }

    #[test]
    fn windows_parse_print_and_wrap_past_midnight() {
        assert_eq!(w("mon-fri 07:00-19:00").days, 0b0011111);
        assert_eq!(w("sat,sun 09:00-13:00").days, 0b1100000);
        assert_eq!(w("fri-mon 09:00-13:00").days, 0b1110001);
        assert_eq!(w("Mon-Fri 07:00-19:00").to_string(), "mon,tue,wed,thu,fri 07:00-19:00");
        let night = w("fri 22:00-06:00");
        assert!(night.contains(4, 23 * 60) && night.contains(5, 5 * 60 + 59));
        assert!(!night.contains(5, 6 * 60) && !night.contains(4, 21 * 60) && !night.contains(3, 23 * 60));
        assert!(w("sun 22:00-06:00").contains(0, 60), "Sunday night runs into Monday");
        for bad in ["", "mon", "mon 7-19", "funday 07:00-19:00", "mon 25:00-26:00", "mon 07:00-07:00", "mon 07:60-08:00"] {
            assert!(bad.parse::<WeeklyWindow>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_member_is_granted_inside_the_schedule_and_told_why_not_outside_it() {
        let r = site();
        let staff = member(&["staff"]);
        assert_eq!(r.decide("lab", &staff, paris(0, 9, 0)), Ok(()));
        assert_eq!(r.decide("lab", &staff, paris(0, 6, 59)), Err(Denial::Schedule));
        assert_eq!(r.decide("lab", &staff, paris(0, 19, 0)), Err(Denial::Schedule), "the end is exclusive");
        assert_eq!(r.decide("lab", &staff, paris(5, 9, 0)), Err(Denial::Schedule), "Saturday");
        // Local time, not UTC: 06:30 UTC is 07:30 in Paris.
        assert_eq!(r.decide("lab", &staff, paris(0, 7, 30)), Ok(()));
        let guard = member(&["guards"]);
        assert_eq!(r.decide("front", &guard, paris(6, 3, 0)), Ok(()), "no schedule: always");
        assert_eq!(r.decide("lab", &guard, paris(0, 9, 0)), Err(Denial::Group));
        let cleaner = member(&["cleaners"]);
        assert_eq!(r.decide("front", &cleaner, paris(2, 23, 0)), Ok(()));
        assert_eq!(r.decide("front", &cleaner, paris(2, 12, 0)), Err(Denial::Schedule));
        // Any allowed group in its schedule is enough.
        assert_eq!(r.decide("front", &member(&["staff", "cleaners"]), paris(2, 23, 0)), Ok(()));
        assert_eq!(r.decide("nowhere", &staff, paris(0, 9, 0)), Err(Denial::Group), "an unknown door admits nobody");
        assert_eq!(r.decide("lab", &member(&[]), paris(0, 9, 0)), Err(Denial::Group));
    }

    #[test]
    fn the_validity_window_comes_first_and_a_door_schedule_narrows_every_group() {
        let mut r = site();
        let mut staff = member(&["staff"]);
        staff.valid_until = Some(paris(0, 12, 0));
        assert_eq!(r.decide("lab", &staff, paris(0, 11, 59)), Ok(()));
        assert_eq!(r.decide("lab", &staff, paris(0, 12, 0)), Err(Denial::Expired));
        staff.valid_from = Some(paris(0, 10, 0));
        assert_eq!(r.decide("lab", &staff, paris(0, 9, 0)), Err(Denial::Expired), "not yet valid");
        r.schedules.insert("mornings".into(), Schedule { windows: vec![w("daily 06:00-12:00")] });
        r.doors.get_mut("front").unwrap().schedule = Some("mornings".into());
        let guard = member(&["guards"]);
        assert_eq!(r.decide("front", &guard, paris(0, 11, 0)), Ok(()));
        assert_eq!(r.decide("front", &guard, paris(0, 13, 0)), Err(Denial::Schedule));
    }

    #[test]
    fn rules_naming_what_does_not_exist_are_refused() {
        let mut r = site();
        r.doors.get_mut("lab").unwrap().groups.insert("visitors".into());
        assert!(r.validate().unwrap_err().to_string().contains("visitors"));
        let mut r = site();
        r.groups.get_mut("staff").unwrap().schedule = Some("weekends".into());
        assert!(r.validate().unwrap_err().to_string().contains("weekends"));
        let r = Rules { time_zone: "Mars/Olympus".into(), ..site() };
        assert!(r.validate().is_err());
        assert_eq!(r.decide("lab", &member(&["staff"]), paris(0, 9, 0)), Err(Denial::Schedule), "fails secure");
    }
}
