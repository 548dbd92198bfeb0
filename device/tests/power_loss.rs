//! Power cuts through what the door writes beside its gallery and log: the
//! rules copy a site apply saves with the gallery, the settings and secrets a
//! fleet join writes, and the pairing file.

use facegate_core::ModelId;
use facegate_device::config::Config;
use facegate_device::events::Events;
use facegate_device::fleet::{read_copy, save_applied};
use facegate_device::provision::{load_pairings, open_pairings, save_pairings, DeviceHandler};
use facegate_device::shared::Shared;
use facegate_power_loss::{explore, reached};
use facegate_protocol::server::{Handler, PairedHost};
use facegate_protocol::Request;
use facegate_provision::GalleryHome;
use facegate_site::{DoorCopy, DoorSecrets, Rules};
use facegate_store::{disk, Gallery};
use std::path::Path;
use std::sync::Arc;

const MODEL: ModelId = ModelId::from_bytes([0xd; 32]);
const DOOR: &str = "front";

/// Site version `v`'s gallery: a different set of people each time.
fn people(v: u64) -> Vec<String> {
    match v {
        1 => vec!["Ada".into(), "Bob".into()],
        2 => vec!["Ada".into(), "Bob".into(), "Cy".into()],
        _ => vec!["Bob".into(), "Cy".into()],
    }
}

fn gallery(v: u64) -> Gallery {
    let mut g = Gallery::new(MODEL);
    for (k, name) in people(v).iter().enumerate() {
        let face = std::array::from_fn(|i| ((i as f32 * 0.37 + k as f32).sin()) * 0.1);
        g.add_person(name, vec![face], MODEL, 1).unwrap();
    }
    g
}

/// Applies version `v` as the door's site link does.
fn apply(home: &GalleryHome, site: &Path, v: u64) {
    let g = gallery(v);
    let bytes = g.to_bytes();
    let copy = DoorCopy {
        version: v,
        door: DOOR.into(),
        rules: Rules::default(),
        access: Default::default(),
        issued_at: 1_700_000_000 + v as i64,
        manifest: [v as u8; 32],
        gallery: facegate_site::records::digest(&bytes),
    };
    save_applied(home, &bytes, g, site, &copy).unwrap();
}

fn names(g: &Gallery) -> Vec<String> {
    let mut n: Vec<String> = g.people().iter().map(|p| p.name.clone()).collect();
    n.sort();
    n
}

#[test]
fn power_loss_rules_copy_and_replica_apply() {
    let (gallery_path, site_path) = (|d: &Path| d.join("gallery.fgg"), |d: &Path| d.join("site.copy"));
    let report = explore(
        "rules copy and gallery (site apply)",
        |dir| apply(&GalleryHome::open(&gallery_path(dir), MODEL).unwrap(), &site_path(dir), 1),
        |dir| {
            let home = GalleryHome::open(&gallery_path(dir), MODEL).unwrap();
            for v in 2..=3 {
                apply(&home, &site_path(dir), v);
                disk::mark(format!("applied {v}"));
            }
        },
        |dir, marks| {
            let acked = (2..=3).filter(|v| reached(marks, &format!("applied {v}"))).max().unwrap_or(1);
            let home = GalleryHome::open(&gallery_path(dir), MODEL).map_err(|e| format!("the gallery does not open: {e}"))?;
            let found = names(&home.read());
            let version_of = |names: &[String]| (1..=3).find(|v| people(*v) == names);
            let gallery_version =
                version_of(&found).ok_or_else(|| format!("the gallery holds {found:?}, no version's people"))?;
            let copy = read_copy(&site_path(dir), DOOR, &home.read());
            match copy {
                Ok(Some(copy)) if copy.version != gallery_version => {
                    Err(format!("rules of version {} in force over the gallery of version {gallery_version}", copy.version))
                }
                Ok(Some(copy)) if copy.version < acked => {
                    Err(format!("version {acked} was applied, {} is in force", copy.version))
                }
                Ok(Some(_)) => Ok(()),
                // Locked, and the status says why: allowed only between the gallery's save and the copy's.
                Err(_) if gallery_version >= acked && gallery_version > 1 => Ok(()),
                Err(why) => Err(format!("the door locked itself over a whole save (after {marks:?}): {why}")),
                Ok(None) => Err("the door lost its rules copy".into()),
            }
        },
    )
    .finish();
    report.assert_clean();
}

const BROKER: &str = "mqtts://broker.example:8883";

fn secrets() -> DoorSecrets {
    DoorSecrets {
        site: "hq".into(),
        door: DOOR.into(),
        site_public_key: facegate_core::hex(&[1; 32]),
        data_key: facegate_core::hex(&[2; 32]),
        username: DOOR.into(),
        password: "pw".into(),
        min_version: 2,
    }
}

#[test]
fn power_loss_fleet_join_settings_and_secrets() {
    let (config_path, secrets_path) = (|d: &Path| d.join("facegate.toml"), |d: &Path| d.join("fleet.toml"));
    let report = explore(
        "settings and secrets (fleet join)",
        |dir| std::fs::write(config_path(dir), toml::to_string(&Config::default()).unwrap()).unwrap(),
        |dir| {
            let home = Arc::new(GalleryHome::open(&dir.join("gallery.fgg"), MODEL).unwrap());
            let shared = Arc::new(Shared::new(home, Events::new(None, false).unwrap()));
            let config = Config::from_toml(&std::fs::read_to_string(config_path(dir)).unwrap()).unwrap();
            let (commands, _) = std::sync::mpsc::channel();
            let mut door =
                DeviceHandler::new(shared, dir.join("pairing.bin"), config, Some(config_path(dir)), commands, secrets_path(dir));
            let host = PairedHost { host: [3; 16], name: "laptop".into(), secret: [4; 32], counter_mark: 0 };
            let join = Request::FleetJoin { secrets: secrets().to_toml(), broker: BROKER.into(), ca_pem: String::new() };
            door.handle(join, &host).unwrap();
            disk::mark("joined");
        },
        |dir, marks| {
            let text = std::fs::read_to_string(config_path(dir)).map_err(|e| format!("the settings are gone: {e}"))?;
            let config = Config::from_toml(&text).map_err(|e| format!("the settings do not read: {e:#}"))?;
            let fleet = &config.fleet;
            let before = Config::default().fleet;
            let joined = fleet.enabled && fleet.broker == BROKER && fleet.ca_file.is_empty();
            let untouched = !fleet.enabled && fleet.broker == before.broker && fleet.ca_file == before.ca_file;
            if !joined && !untouched {
                return Err(format!(
                    "the settings are half a join: enabled {}, broker {:?}, ca {:?}",
                    fleet.enabled, fleet.broker, fleet.ca_file
                ));
            }
            if reached(marks, "joined") && !joined {
                return Err("the join was acknowledged and the settings do not have it".into());
            }
            if joined {
                let text = std::fs::read_to_string(secrets_path(dir)).map_err(|e| format!("joined without secrets: {e}"))?;
                let read = DoorSecrets::from_toml(&text).map_err(|e| format!("joined with unreadable secrets: {e}"))?;
                if read.door != DOOR || read.password != "pw" {
                    return Err(format!("joined with other secrets: {read:?}"));
                }
            }
            Ok(())
        },
    )
    .finish();
    report.assert_clean();
}

#[test]
fn power_loss_pairings() {
    let path = |d: &Path| d.join("pairing.bin");
    let created = std::cell::RefCell::new(None);
    let report = explore(
        "pairings",
        |_| {},
        |dir| {
            let mut pairings = open_pairings(&path(dir)).unwrap();
            disk::mark("created");
            *created.borrow_mut() = Some(pairings.clone());
            pairings.hosts.push(PairedHost { host: [5; 16], name: "laptop".into(), secret: [6; 32], counter_mark: 9 });
            save_pairings(&path(dir), &pairings).unwrap();
            disk::mark("paired");
        },
        |dir, marks| {
            let created = created.borrow().clone().expect("the run made an identity");
            if !path(dir).exists() {
                return match reached(marks, "created") {
                    true => Err("the door's identity was lost after it was made".into()),
                    false => Ok(()),
                };
            }
            let read = load_pairings(&path(dir)).ok_or("the pairing file is damaged: the door refuses to start")?;
            let ok = match (reached(marks, "paired"), read.hosts.len()) {
                (_, 1) => read.device == created.device && read.hosts[0].counter_mark == 9,
                (false, 0) => read.device == created.device,
                _ => false,
            };
            match ok {
                true => Ok(()),
                false => Err(format!("the pairing file holds {} hosts after {marks:?}", read.hosts.len())),
            }
        },
    )
    .finish();
    report.assert_clean();
}
