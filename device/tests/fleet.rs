//! Doors of one site through a real broker (mosquitto over TLS, started
//! here): ten real `device` processes (1,000 people × 3 templates) on replays of LFW photos with simulated
//! locks follow the site's signed records, decide by its groups, send their
//! events back with (door, seq), refuse a forged change, and the broker's
//! store never holds a plain template.
//! Needs LFW in ../shared (or $FACEGATE_LFW_DIR) and mosquitto; skips loudly without them.

use facegate_core::{Embedding, ModelId};
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{Network, Pipeline, PipelineConfig, Precision};
use facegate_site::{Access, AdminKey, DataKey, Door, DoorSecrets, Group, PersonRecord, Rules, Schedule, SiteState};
use facegate_testkit::fleet::{collect, start_door, start_door_with, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const PERSON: &str = "Colin_Powell";

/// Colin Powell's templates from photos 1–3, and his photos 10–14 in `approach`.
fn templates_and_approach(data: &facegate_lfw::Dataset, approach: &Path) -> (Vec<Embedding>, ModelId) {
    std::fs::create_dir_all(approach).unwrap();
    for (k, i) in (10..15).enumerate() {
        std::fs::write(approach.join(format!("{k:03}.jpg")), data.read(&facegate_lfw::image_path(PERSON, i)).unwrap()).unwrap();
    }
    colin_templates(data, Network::default())
}

/// Colin Powell's templates of `network` from photos 1–3.
fn colin_templates(data: &facegate_lfw::Dataset, network: Network) -> (Vec<Embedding>, ModelId) {
    let pipeline = Pipeline::load(
        &facegate_testkit::models(),
        Precision::Int8,
        PipelineConfig { upsample: 1, min_face: 40, retry_threshold: Some(-0.6), network, ..PipelineConfig::door() },
    )
    .unwrap();
    let templates = (1..=3)
        .map(|i| {
            let img = decode_image(&data.read(&facegate_lfw::image_path(PERSON, i)).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
            pipeline.embed(&pipeline.faces(&img)[0]).unwrap()
        })
        .collect();
    (templates, pipeline.embedder.model_id())
}

struct Site {
    admin: AdminKey,
    data: DataKey,
    state: SiteState,
}

fn site(model: ModelId, colin: &[Embedding], strangers: usize) -> Site {
    let (admin, data) = (AdminKey::generate().unwrap(), DataKey::generate().unwrap());
    let mut rules = Rules { time_zone: "Europe/Paris".into(), ..Rules::default() };
    rules.groups.insert("staff".into(), Group::default());
    rules.groups.insert("visitors".into(), Group::default());
    rules.doors.insert("front".into(), Door { groups: ["staff".to_string()].into(), schedule: None });
    rules.doors.insert("lab".into(), Door { groups: ["visitors".to_string()].into(), schedule: None });
    let staff = Access { groups: ["staff".to_string()].into(), ..Access::default() };
    let mut people = BTreeMap::new();
    people.insert("p-colin".to_string(), PersonRecord::new("hq", "p-colin", PERSON, staff.clone(), colin, &data).unwrap());
    for k in 0..strangers {
        let t: Vec<Embedding> = (0..3).map(|j| std::array::from_fn(|i| ((i * 13 + k * 7 + j) as f32).sin() * 0.09)).collect();
        let id = format!("p-{k:04}");
        people.insert(id.clone(), PersonRecord::new("hq", &id, &format!("Person {k}"), staff.clone(), &t, &data).unwrap());
    }
    Site { admin, data, state: SiteState { name: "hq".into(), version: 1, model, rules, people } }
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A door's directory with its secrets, as pairing would leave it.
fn door_dir(root: &Path, door: &str, site: &Site) -> std::path::PathBuf {
    let dir = root.join(door);
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = DoorSecrets {
        site: "hq".into(),
        door: door.into(),
        site_public_key: facegate_core::hex(&site.admin.public().to_bytes()),
        data_key: facegate_core::hex(&site.data.to_bytes()),
        username: format!("door-{door}"),
        password: format!("pw-{door}"),
        min_version: 1,
    };
    std::fs::write(dir.join("fleet.toml"), secrets.to_toml()).unwrap();
    dir
}

#[test]
fn doors_follow_their_site_decide_by_its_groups_and_report_back() {
    let Some((data, _)) = facegate_testkit::lfw("the fleet test") else { return };
    let dir = tempfile::tempdir().unwrap();
    // Ten doors: the front door and the lab see Colin; eight halls see an empty corridor.
    let halls: Vec<String> = (2..10).map(|i| format!("hall-{i}")).collect();
    let logins: Vec<(String, String)> = ["front", "lab"]
        .iter()
        .map(|d| d.to_string())
        .chain(halls.iter().cloned())
        .map(|d| (format!("door-{d}"), format!("pw-{d}")))
        .collect();
    let mut users = vec![("admin", "pw-admin")];
    users.extend(logins.iter().map(|(u, p)| (u.as_str(), p.as_str())));
    let Some(mut broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the fleet test") else { return };
    let approach = dir.path().join("approach");
    let corridor = dir.path().join("corridor");
    std::fs::create_dir_all(&corridor).unwrap();
    image::RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90])).save(corridor.join("empty.png")).unwrap();
    let (colin, model) = templates_and_approach(&data, &approach);
    // 1,000 people, 3 templates each.
    let mut site = site(model, &colin, 999);
    for h in &halls {
        site.state.rules.doors.insert(h.clone(), Door { groups: ["staff".to_string()].into(), schedule: None });
    }
    let events = collect(&broker, "admin", "pw-admin", "facegate/hq/doors/+/events");
    let status = collect(&broker, "admin", "pw-admin", "facegate/hq/doors/+/status");
    let online = |door: &str| {
        status.lock().unwrap().iter().rev().find(|(t, _)| t.contains(&format!("/{door}/status"))).map(|(_, s)| s.clone())
    };
    let hall_doors: Vec<_> = halls.iter().map(|h| start_door(&door_dir(dir.path(), h, &site), &broker, &corridor)).collect();
    broker.publish_retained(
        "admin",
        "pw-admin",
        &site.state.messages(&site.admin, &site.data, &BTreeMap::new(), now_s(), [0; 32]).unwrap(),
    );

    // Colin is staff: granted at the front door; the lab admits visitors only
    // and never receives him: a stranger there.
    let front = start_door(&door_dir(dir.path(), "front", &site), &broker, &approach);
    let lab = start_door(&door_dir(dir.path(), "lab", &site), &broker, &approach);
    front.wait_for("site-synced", None, 60);
    let granted = front.wait_for("granted", Some(PERSON), 60);
    let denied = lab.wait_for("unknown", None, 60);
    assert_eq!(lab.kinds("granted"), 0, "the lab never opens for staff");
    assert!(granted["seq"].as_u64().is_some() && denied["seq"].as_u64().is_some());
    // Both arrive at the broker with (door, seq).
    let arrived = |door: &str, seq: &Value| {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|(topic, e)| topic.ends_with(&format!("/{door}/events")) && e["door"] == door && e["seq"] == *seq)
    };
    wait_until("the front door's grant at the broker", 30, || arrived("front", &granted["seq"]));
    wait_until("the lab's denial at the broker", 30, || arrived("lab", &denied["seq"]));
    // Status: online, the applied version, every person it admits, at all ten doors; the lab admits nobody of them.
    for door in ["front", "lab"].into_iter().chain(halls.iter().map(String::as_str)) {
        wait_until(&format!("{door}'s status at version 1"), 60, || online(door).is_some_and(|s| s["version"] == 1));
        let s = online(door).unwrap();
        let (people, templates) = if door == "lab" { (0, 0) } else { (1000, 3000) };
        assert!(
            s["online"] == true && s["people"] == people && s["templates"] == templates && s["model"] == model.to_hex(),
            "{door}: {s}"
        );
    }
    for h in hall_doors {
        assert_eq!(h.kinds("granted"), 0, "nobody in the corridor");
        h.stop();
    }

    // A change signed with another key, published by someone with broker access: refused and logged.
    let intruder = AdminKey::generate().unwrap();
    let mut forged = site.state.clone();
    forged.version = 99;
    forged.rules.doors.get_mut("lab").unwrap().groups.insert("staff".into());
    broker.publish_retained(
        "admin",
        "pw-admin",
        &forged.messages(&intruder, &site.data, &BTreeMap::new(), now_s(), [0; 32]).unwrap(),
    );
    lab.wait_for("refused", None, 30);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.kinds("site-synced"), 1, "the forged version is not applied");
    let before = lab.kinds("unknown");
    wait_until("another refusal at the lab", 30, || lab.kinds("unknown") > before);
    assert_eq!(lab.kinds("granted"), 0);

    // Stopped doors say offline (their last status, retained).
    front.stop();
    lab.stop();
    wait_until("the front door's offline status", 30, || online("front").is_some_and(|s| s["online"] == false));

    // The broker's store holds the sealed records, never a plain template.
    broker.stop();
    let store = std::fs::read(broker.store()).expect("mosquitto saved its store");
    assert!(store.windows(19).any(|w| w == b"facegate/hq/people/"), "the records are in the store");
    for t in &colin {
        let plain: Vec<u8> = t[..4].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!store.windows(plain.len()).any(|w| w == plain), "a plain template in the broker's store");
    }
}

/// The door's schedule is "mon-fri 07:00-19:00" in Paris and Colin's access
/// ends on 2027-06-30; the door's clock is injected (`--clock-start`).
/// Without its broker the door still decides from its copy, and the events it
/// logged meanwhile reach the broker once each when it is back.
#[test]
fn a_door_decides_by_schedule_and_validity_without_its_broker_and_sends_those_events_later() {
    let Some((data, _)) = facegate_testkit::lfw("the fleet schedule test") else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = [("admin", "pw-admin"), ("door-front", "pw-front")];
    let Some(mut broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the fleet schedule test") else {
        return;
    };
    let approach = dir.path().join("approach");
    let (colin, model) = templates_and_approach(&data, &approach);
    let mut site = site(model, &colin, 0);
    let office = Schedule { windows: vec!["mon-fri 07:00-19:00".parse().unwrap()] };
    site.state.rules.schedules.insert("office".into(), office);
    site.state.rules.doors.get_mut("front").unwrap().schedule = Some("office".into());
    let until = chrono::DateTime::parse_from_rfc3339("2027-06-30T00:00:00+02:00").unwrap().timestamp();
    let access = Access { groups: ["staff".to_string()].into(), valid_until: Some(until), ..Access::default() };
    site.state.people.insert("p-colin".into(), PersonRecord::new("hq", "p-colin", PERSON, access, &colin, &site.data).unwrap());
    broker.publish_retained(
        "admin",
        "pw-admin",
        &site.state.messages(&site.admin, &site.data, &BTreeMap::new(), now_s(), [0; 32]).unwrap(),
    );
    let front_dir = door_dir(dir.path(), "front", &site);
    let door_at = |broker: &facegate_testkit::broker::Broker, time: &str| {
        start_door_with(&front_dir, broker, &approach, &["--clock-start", time])
    };

    // Wednesday 10:00 in Paris: inside the window, inside the validity.
    let front = door_at(&broker, "2026-12-02T10:00:00+01:00");
    front.wait_for("site-synced", None, 60);
    front.wait_for("granted", Some(PERSON), 60);
    front.stop();

    // The broker dies (SIGKILL). Sunday 10:00: the door decides alone, from its copy.
    broker.kill();
    let front = door_at(&broker, "2026-12-06T10:00:00+01:00");
    front.wait_for("denied-schedule", Some(PERSON), 60);
    wait_until("three refusals on Sunday", 60, || front.kinds("denied-schedule") >= 3);
    let offline: Vec<u64> = front.events.lock().unwrap().iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(front.kinds("granted"), 0, "closed on Sunday");
    front.stop();

    // The broker is back (same store); a Wednesday after Colin's access ended.
    broker.restart();
    let events = collect(&broker, "admin", "pw-admin", "facegate/hq/doors/+/events");
    let front = door_at(&broker, "2027-07-07T10:00:00+02:00");
    front.wait_for("denied-expired", Some(PERSON), 60);
    let copies = |seq: u64| events.lock().unwrap().iter().filter(|(_, e)| e["door"] == "front" && e["seq"] == seq).count();
    wait_until("Sunday's events at the broker", 60, || offline.iter().all(|s| copies(*s) > 0));
    std::thread::sleep(Duration::from_secs(2));
    for seq in &offline {
        assert_eq!(copies(*seq), 1, "event {seq} of the offline Sunday arrives once");
    }
    let sunday: Vec<Value> =
        events.lock().unwrap().iter().filter(|(_, e)| e["kind"] == "denied-schedule").map(|(_, e)| e.clone()).collect();
    assert!(
        sunday.len() >= 3 && sunday.iter().all(|e| e["time"].as_str().is_some_and(|t| t.starts_with("2026-12-06"))),
        "{sunday:?}"
    );
    assert_eq!(front.kinds("granted"), 0, "expired");
    front.stop();
}

/// The door against what a broker login can do (review rows 2, 4, 5, 7, 9):
/// replay an old site, flood its topics with junk, take its MQTT session
/// over, ask for its whole log again; and against a gallery save that
/// failed after its rules copy was saved.
#[test]
fn a_door_refuses_old_sites_junk_floods_takeovers_and_unsigned_asks_and_repairs_a_failed_save() {
    let Some((data, _)) = facegate_testkit::lfw("the fleet hardening test") else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = [("admin", "pw-admin"), ("door-front", "pw-front"), ("door-lab", "pw-lab")];
    let Some(broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the fleet hardening test") else {
        return;
    };
    let approach = dir.path().join("approach");
    let (colin, model) = templates_and_approach(&data, &approach);
    let mut site = site(model, &colin, 2);
    let statuses = collect(&broker, "admin", "pw-admin", "facegate/hq/doors/+/status");
    let status = || statuses.lock().unwrap().iter().rev().find(|(t, _)| t.ends_with("/front/status")).map(|(_, s)| s.clone());
    let publish = |site: &Site, issued_at: i64| {
        broker.publish_retained(
            "admin",
            "pw-admin",
            &site.state.messages(&site.admin, &site.data, &BTreeMap::new(), issued_at, [0; 32]).unwrap(),
        )
    };

    // Joined at version 2: version 1, replayed, is refused and the status says why.
    publish(&site, now_s() - 60);
    let front_dir = door_dir(dir.path(), "front", &site);
    let mut secrets = DoorSecrets::from_toml(&std::fs::read_to_string(front_dir.join("fleet.toml")).unwrap()).unwrap();
    secrets.min_version = 2;
    std::fs::write(front_dir.join("fleet.toml"), secrets.to_toml()).unwrap();
    let front = start_door(&front_dir, &broker, &approach);
    wait_until("the replayed version 1 refused", 60, || {
        status().is_some_and(|s| s["version"] == 0 && s["error"].as_str().is_some_and(|e| e.contains("joined at")))
    });
    site.state.people.remove("p-0000");
    site.state.version = 2;
    publish(&site, now_s());
    wait_until("version 2 applied", 60, || status().is_some_and(|s| s["version"] == 2 && s["people"] == 2));
    assert_eq!(front.kinds("site-synced"), 1);

    // Another login connects with the client id doors used to have: the door stays connected.
    let offline =
        || statuses.lock().unwrap().iter().filter(|(t, s)| t.ends_with("/front/status") && s["online"] == false).count();
    let before = offline();
    let (_intruder, mut connection) = broker.client("facegate-hq-front", "door-lab", "pw-lab");
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        let _ = connection.recv_timeout(Duration::from_millis(100));
    }
    assert_eq!(offline(), before, "the door was not kicked off (no offline will)");
    assert!(!front.stderr().contains("lost the broker"), "{}", front.stderr());

    // 3,000 unsigned messages on the site's topics: one `refused` event now, the rest told in a minute.
    let junk: Vec<(String, Vec<u8>)> = (0..3000).map(|i| (format!("facegate/hq/people/junk-{i}"), b"junk".to_vec())).collect();
    broker.publish("admin", "pw-admin", &junk, false);
    front.wait_for("refused", None, 30);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(front.kinds("refused"), 1, "junk does not wash the access log");

    // An unsigned request for the whole log again is refused; the administrator's signed one is served.
    let events = collect(&broker, "admin", "pw-admin", "facegate/hq/doors/front/events");
    std::thread::sleep(Duration::from_secs(1));
    let resend = "facegate/hq/doors/front/resend".to_string();
    broker.publish("door-lab", "pw-lab", &[(resend.clone(), br#"{"from": 1}"#.to_vec())], false);
    std::thread::sleep(Duration::from_secs(3));
    let first_again = || events.lock().unwrap().iter().filter(|(_, e)| e["seq"] == 1).count();
    assert_eq!(first_again(), 0, "an unsigned ask is not served");
    let at_ms = now_s() * 1000;
    let ask = facegate_site::resend::ResendRequest { from: 1, until: 1, at_ms }.sign(&site.admin, &resend);
    broker.publish("admin", "pw-admin", &[(resend.clone(), ask.clone())], false);
    wait_until("event 1 sent again on the administrator's request", 30, || first_again() == 1);
    broker.publish("admin", "pw-admin", &[(resend, ask)], false);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(first_again(), 1, "the same signed request, replayed, is not served again");

    // Version 3 is saved, then the gallery goes back to version 2's, as when
    // its save fails after the rules copy was saved: the door notices at
    // start and applies version 3 again.
    front.stop();
    let gallery = front_dir.join("gallery.fg");
    let gallery_v2 = std::fs::read(&gallery).unwrap();
    site.state.people.remove("p-0001");
    site.state.version = 3;
    publish(&site, now_s());
    let front = start_door(&front_dir, &broker, &approach);
    wait_until("version 3 applied", 60, || status().is_some_and(|s| s["version"] == 3 && s["people"] == 1));
    front.stop();
    std::fs::write(&gallery, &gallery_v2).unwrap();
    let front = start_door(&front_dir, &broker, &approach);
    front.wait_for("error", None, 30);
    wait_until("version 3 applied again", 60, || {
        status().is_some_and(|s| s["online"] == true && s["version"] == 3 && s["people"] == 1 && s["error"].is_null())
    });
    assert_ne!(std::fs::read(&gallery).unwrap(), gallery_v2, "the gallery of version 3 is saved again");

    // A door that lost its copy takes no version issued 40 days ago; one issued now, it does.
    front.stop();
    std::fs::remove_file(front_dir.join("site.fgsite")).unwrap();
    site.state.version = 4;
    publish(&site, now_s() - 40 * 86_400);
    let front = start_door(&front_dir, &broker, &approach);
    wait_until("the 40-day-old version refused", 60, || {
        status().is_some_and(|s| s["online"] == true && s["error"].as_str().is_some_and(|e| e.contains("sync")))
    });
    assert_eq!(status().unwrap()["version"], 0);
    site.state.version = 5;
    publish(&site, now_s());
    wait_until("version 5 applied", 60, || status().is_some_and(|s| s["version"] == 5));
    front.stop();
}

#[test]
fn doors_of_a_two_network_site_each_search_their_own_and_a_door_switched_serves_at_once() {
    let Some((data, _)) = facegate_testkit::lfw("the two-network fleet test") else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = [("admin", "pw-admin"), ("door-front", "pw-front"), ("door-back", "pw-back")];
    let Some(mut broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the two-network fleet test")
    else {
        return;
    };
    let approach = dir.path().join("approach");
    // The site runs the default network; Colin was enrolled with dlib's too, a colleague with the site's only.
    let (colin, model) = templates_and_approach(&data, &approach);
    let (colin_dlib, dlib_model) = colin_templates(&data, Network::Dlib);
    assert_ne!(model, dlib_model, "the test needs the default network not to be dlib");
    let mut site = site(model, &colin, 1);
    let staff = Access { groups: ["staff".to_string()].into(), ..Access::default() };
    let others = [facegate_site::NetworkTemplates { model: dlib_model, templates: colin_dlib }];
    let both = PersonRecord::with_others("hq", "p-colin", PERSON, staff, &colin, &others, &site.data).unwrap();
    site.state.people.insert("p-colin".into(), both);
    site.state.rules.doors.insert("back".into(), Door { groups: ["staff".to_string()].into(), schedule: None });
    let status = collect(&broker, "admin", "pw-admin", "facegate/hq/doors/+/status");
    let latest = |door: &str| {
        status.lock().unwrap().iter().rev().find(|(t, _)| t.contains(&format!("/{door}/status"))).map(|(_, s)| s.clone())
    };
    broker.publish_retained(
        "admin",
        "pw-admin",
        &site.state.messages(&site.admin, &site.data, &BTreeMap::new(), now_s(), [0; 32]).unwrap(),
    );
    // The front door runs the site's network, the back door dlib: both let Colin in.
    let front = start_door(&door_dir(dir.path(), "front", &site), &broker, &approach);
    let back_dir = door_dir(dir.path(), "back", &site);
    let dlib = facegate_testkit::fleet::DoorReplay { fps: 5, network: Some("dlib") };
    let back = facegate_testkit::fleet::RunningDoor::start(
        &facegate_testkit::binary("device"),
        &facegate_testkit::models(),
        &back_dir,
        &broker,
        &approach,
        dlib,
        &[],
    );
    front.wait_for("granted", Some(PERSON), 90);
    back.wait_for("granted", Some(PERSON), 90);
    // The back door searches only dlib's templates: the colleague is counted, not searched.
    wait_until("both doors' statuses", 30, || {
        latest("front").is_some_and(|s| s["people"] == 2 && s["without_templates"] == 0)
            && latest("back").is_some_and(|s| s["people"] == 1 && s["without_templates"] == 1)
    });
    assert_eq!(latest("back").unwrap()["model"], dlib_model.to_hex());
    assert_eq!(latest("front").unwrap()["model"], model.to_hex());
    // The back door switched to the site's network (recognition.network, a
    // restart) while the broker is down: Colin passes from what the door
    // holds; once the broker is back, the version taken again adds the colleague.
    back.stop();
    broker.stop();
    let back = start_door(&back_dir, &broker, &approach);
    back.wait_for("granted", Some(PERSON), 90);
    assert_eq!(back.kinds("site-synced"), 0, "granted before the site was read again");
    broker.restart();
    wait_until("the switched door's status", 90, || {
        latest("back").is_some_and(|s| s["model"] == model.to_hex().as_str() && s["people"] == 2 && s["without_templates"] == 0)
    });
    assert_eq!(back.kinds("error"), 0, "{}", back.stderr());
}
