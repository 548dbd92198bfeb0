//! Power cuts through the gallery's save and swap (plain and sealed at rest)
//! and the access log's creation, appends and ring wrap.

use facegate_core::{Embedding, ModelId};
use facegate_power_loss::{explore, reached};
use facegate_provision::GalleryHome;
use facegate_site::DataKey;
use facegate_store::{disk, AccessLog, Event, EventKind, Gallery, LogWriter};
use std::path::Path;

const MODEL: ModelId = ModelId::from_bytes([0xa; 32]);

fn face(seed: f32) -> Embedding {
    std::array::from_fn(|i| ((i as f32 * 0.37 + seed).sin()) * 0.1)
}

fn names(g: &Gallery) -> Vec<String> {
    let mut names: Vec<String> = g.people().iter().map(|p| p.name.clone()).collect();
    names.sort();
    names
}

/// A gallery of `people`, each with `templates` templates (so a save spans many sectors when asked).
fn gallery(people: &[&str], templates: usize) -> Gallery {
    let mut g = Gallery::new(MODEL);
    for name in people {
        let seed = name.len() as f32 + name.as_bytes()[0] as f32;
        g.add_person(name, (0..templates).map(|k| face(seed + k as f32 * 0.01)).collect(), MODEL, 1).unwrap();
    }
    g
}

/// Saves `people` through the door's gallery home, as enrolment and a site apply do.
fn save(home: &GalleryHome, people: &[&str], templates: usize) {
    let g = gallery(people, templates);
    home.replace(&g.to_bytes(), g).unwrap();
}

fn gallery_scenario(file: &str, templates: usize, seal: Option<[u8; 32]>) {
    let key = || seal.map(DataKey::from_bytes);
    // Three galleries in a row: two people, then a third, then the first gone.
    let (v1, v2, v3) = (vec!["Ada", "Bob"], vec!["Ada", "Bob", "Cy"], vec!["Bob", "Cy"]);
    let path = |dir: &Path| dir.join("gallery.fgg");
    let report = explore(
        file,
        |dir| {
            let home = GalleryHome::open_sealed(&path(dir), MODEL, key()).unwrap();
            save(&home, &v1, templates);
        },
        |dir| {
            let home = GalleryHome::open_sealed(&path(dir), MODEL, key()).unwrap();
            save(&home, &v2, templates);
            disk::mark("saved 2");
            save(&home, &v3, templates);
            disk::mark("saved 3");
        },
        |dir, marks| {
            let home =
                GalleryHome::open_sealed(&path(dir), MODEL, key()).map_err(|e| format!("the gallery does not open: {e}"))?;
            let found = names(&home.read());
            let allowed: Vec<&Vec<&str>> = if reached(marks, "saved 3") {
                vec![&v3]
            } else if reached(marks, "saved 2") {
                vec![&v2, &v3]
            } else {
                vec![&v1, &v2]
            };
            match allowed.iter().any(|v| **v == found) {
                true => Ok(()),
                false => Err(format!("the gallery holds {found:?}; after {marks:?} it may only hold one of {allowed:?}")),
            }
        },
    )
    .finish();
    report.assert_clean();
}

#[test]
fn power_loss_gallery_save_and_swap() {
    gallery_scenario("gallery", 1, None);
}

#[test]
fn power_loss_gallery_of_many_sectors() {
    // 3 people × 16 templates in f16: saves of about 12 kB, 24 sectors, sampled.
    gallery_scenario("gallery (many sectors)", 16, None);
}

#[test]
fn power_loss_gallery_sealed_at_rest() {
    gallery_scenario("gallery (sealed at rest)", 2, Some([7; 32]));
}

fn event(k: u64) -> Event {
    let mut e = Event::new(EventKind::Granted, 1_700_000_000_000 + k as i64);
    e.name = Some(format!("person {k}"));
    e
}

const CAPACITY: u32 = 4;
const APPENDS: u64 = 7;

/// What any cut must leave of a log to which events `1..=written` were
/// appended, the first `acked` of them acknowledged: a log that opens, whose
/// events are the ones written, holding every acknowledged one the ring still
/// has room for, and numbering new events past them.
fn log_holds(path: &Path, capacity: u32, written: u64, acked: u64) -> Result<(), String> {
    let log = AccessLog::open(path, capacity).map_err(|e| format!("the log does not open: {e}"))?;
    let events = log.events_since(0).map_err(|e| e.to_string())?;
    for e in &events {
        let mut expected = event(e.seq);
        expected.seq = e.seq;
        if e.seq > written || *e != expected {
            return Err(format!("event {} was never written as read: {e:?}", e.seq));
        }
    }
    // An acknowledged event may be gone only under a later one in its slot.
    let kept = acked.saturating_sub(capacity as u64) + 1..=acked;
    let overwritten = |k: u64| events.iter().any(|e| e.seq == k || (e.seq > k && (e.seq - k).is_multiple_of(capacity as u64)));
    if let Some(lost) = kept.clone().find(|k| !overwritten(*k)) {
        return Err(format!("acknowledged event {lost} is gone (held: {:?})", events.iter().map(|e| e.seq).collect::<Vec<_>>()));
    }
    if log.last_seq() < acked {
        return Err(format!(
            "the log would number new events from {}, reusing acknowledged ones up to {acked}",
            log.last_seq() + 1
        ));
    }
    Ok(())
}

#[test]
fn power_loss_access_log_creation_appends_and_wrap() {
    let path = |dir: &Path| dir.join("access.log");
    let report = explore(
        "access log",
        |_| {},
        |dir| {
            let mut log = AccessLog::open(&path(dir), CAPACITY).unwrap();
            disk::mark("opened");
            for k in 1..=APPENDS {
                assert_eq!(log.append(&event(k)).unwrap(), k);
                disk::mark(format!("appended {k}"));
            }
        },
        |dir, marks| {
            if reached(marks, "opened") && !path(dir).exists() {
                return Err("the log's name was lost after it opened".into());
            }
            let acked = (1..=APPENDS).filter(|k| reached(marks, &format!("appended {k}"))).max().unwrap_or(0);
            log_holds(&path(dir), CAPACITY, APPENDS, acked)
        },
    )
    .finish();
    report.assert_clean();
}

#[test]
fn power_loss_access_log_batches_from_the_writer_thread() {
    let path = |dir: &Path| dir.join("access.log");
    let report = explore(
        "access log (batches by the writer thread)",
        |dir| drop(AccessLog::open(&path(dir), CAPACITY).unwrap()),
        |dir| {
            let log = AccessLog::open(&path(dir), CAPACITY).unwrap();
            let writer = LogWriter::start(log, 8, |seq, e| panic!("event {seq} not written: {e}")).unwrap();
            for batch in 0..3 {
                for k in 1..=3 {
                    writer.append(&event(batch * 3 + k)).unwrap();
                }
                // Appends return before the disk has them; a flush is the acknowledgement.
                writer.flush();
                disk::mark(format!("flushed {}", batch * 3 + 3));
            }
            writer.close();
        },
        |dir, marks| {
            let acked = (1..=9).filter(|k| reached(marks, &format!("flushed {k}"))).max().unwrap_or(0);
            log_holds(&path(dir), CAPACITY, 9, acked)
        },
    )
    .finish();
    report.assert_clean();
}
