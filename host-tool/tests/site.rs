//! A site run from `host-tool --site` through a real broker (mosquitto over
//! TLS, started here) with real `device` processes: init, groups, doors with
//! their secrets, enrolment from photos, `sync --wait`, the merged log, the
//! doors' status, a removal reaching every door, and a door that was stopped
//! during changes catching up.
//! Needs LFW in ../shared (or $FACEGATE_LFW_DIR) and mosquitto; skips loudly without them.

use facegate_testkit::fleet::{start_door, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PERSON: &str = "Colin_Powell";

fn host_tool(site: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .arg("--models")
        .arg(facegate_testkit::models())
        .arg("--site")
        .arg(site)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    out
}

fn json(out: Output) -> Value {
    serde_json::from_slice(&ok(out).stdout).expect("one JSON object")
}

/// Colin Powell's photos 1–3 for enrolment, his photos 10–14 as the approach.
fn photos(dir: &Path) -> Option<(Vec<String>, PathBuf)> {
    let (data, _) = facegate_testkit::lfw("the site test")?;
    let approach = dir.join("approach");
    std::fs::create_dir_all(&approach).unwrap();
    let mut enrol = Vec::new();
    for i in 1..=3 {
        let p = dir.join(format!("enrol{i}.jpg"));
        std::fs::write(&p, data.read(&facegate_lfw::image_path(PERSON, i)).unwrap()).unwrap();
        enrol.push(p.display().to_string());
    }
    for (k, i) in (10..15).enumerate() {
        std::fs::write(approach.join(format!("{k:03}.jpg")), data.read(&facegate_lfw::image_path(PERSON, i)).unwrap()).unwrap();
    }
    Some((enrol, approach))
}

#[test]
fn a_site_from_the_host_tool_reaches_its_doors_and_their_events_come_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((enrol, approach)) = photos(dir.path()) else { return };
    let users = [("admin", "pw-admin"), ("door-front", "pw-front"), ("door-lab", "pw-lab")];
    let Some(mut broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the site test") else { return };
    let site = dir.path().join("hq.toml");
    let ca = broker.ca.display().to_string();
    let url = broker.url();
    ok(host_tool(
        &site,
        &["site", "init", "--name", "hq", "--broker", &url, "--ca", &ca, "--username", "admin", "--password", "pw-admin"],
    ));
    assert!(
        !host_tool(&site, &["site", "init", "--name", "hq", "--broker", &url, "--username", "a", "--password", "b"])
            .status
            .success(),
        "a site is made once"
    );
    ok(host_tool(&site, &["group", "add", "staff"]));
    ok(host_tool(&site, &["schedule", "set", "visiting-hours", "daily 00:00-24:00"]));
    ok(host_tool(&site, &["group", "add", "visitors", "--schedule", "visiting-hours"]));
    let mut doors = Vec::new();
    for (door, group) in [("front", "staff"), ("lab", "visitors")] {
        let d = dir.path().join(door);
        std::fs::create_dir_all(&d).unwrap();
        let secrets = d.join("fleet.toml").display().to_string();
        let password = format!("pw-{door}");
        let username = format!("door-{door}");
        ok(host_tool(
            &site,
            &["door", "add", door, "--group", group, "--username", &username, "--password", &password, "--secrets-out", &secrets],
        ));
        doors.push(d);
    }
    // From here the broker runs with the ACL the host tool writes for the site.
    broker.use_acl(&String::from_utf8(ok(host_tool(&site, &["acl"])).stdout).unwrap());
    let enrolled = json(host_tool(
        &site,
        &[&["--json", "enroll", PERSON], &enrol.iter().map(String::as_str).collect::<Vec<_>>()[..], &["--group", "staff"]]
            .concat(),
    ));
    assert_eq!(enrolled["templates"], 3, "{enrolled}");
    let version = enrolled["version"].as_u64().unwrap();
    assert!(!host_tool(&site, &["grant", PERSON, "nobody"]).status.success(), "an unknown group is refused");

    // Both doors apply the site; Colin passes the front door and not the lab,
    // which never receives him (it admits visitors only): a stranger there.
    let front = start_door(&doors[0], &broker, &approach);
    let lab = start_door(&doors[1], &broker, &approach);
    let synced = json(host_tool(&site, &["--json", "sync", "--wait", "--wait-s", "60"]));
    assert_eq!(synced["behind"], serde_json::json!([]), "{synced}");
    assert_eq!(synced["doors"]["front"]["version"], version);
    front.wait_for("granted", Some(PERSON), 60);
    lab.wait_for("unknown", None, 60);

    // The merged log: events of both doors, each (door, seq) printed once across runs.
    let key = |e: &Value| (e["door"].as_str().unwrap().to_string(), e["seq"].as_u64().unwrap());
    let mut log: Vec<Value> = Vec::new();
    wait_until("both doors' events in host-tool log", 60, || {
        let out = ok(host_tool(&site, &["--json", "log"]));
        log.extend(facegate_testkit::json_lines(&out.stdout));
        log.iter().any(|e| e["door"] == "front" && e["kind"] == "granted")
            && log.iter().any(|e| e["door"] == "lab" && e["kind"] == "unknown")
    });
    let mut keys: Vec<(String, u64)> = log.iter().map(key).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no (door, seq) twice across runs: {log:?}");
    // --all asks the doors for everything their logs hold: from seq 1 (sent
    // and delivered long ago), every seq once, no gap.
    let everything: Vec<Value> = facegate_testkit::json_lines(&ok(host_tool(&site, &["--json", "log", "--all"])).stdout);
    for door in ["front", "lab"] {
        let mut seqs: Vec<u64> = everything.iter().filter(|e| e["door"] == door).map(|e| e["seq"].as_u64().unwrap()).collect();
        let n = seqs.len();
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "{door}: a seq twice");
        assert!(n > 0 && seqs == (1..=n as u64).collect::<Vec<_>>(), "{door}: the whole log from 1: {seqs:?}");
    }
    // A door's login speaks for its own door only: an event the lab's login
    // publishes claiming to be the front door's is the lab's (the door comes
    // from the topic), and takes no seq of the front door's.
    let forged = serde_json::json!({"door": "front", "seq": 1_000_000, "kind": "granted", "person": "Mallory", "time": "2026-12-07T08:00:00.000Z"});
    broker.publish("door-lab", "pw-lab", &[("facegate/hq/doors/lab/events".to_string(), forged.to_string().into_bytes())], false);
    let after: Vec<Value> = facegate_testkit::json_lines(&ok(host_tool(&site, &["--json", "log"])).stdout);
    let mallory: Vec<&Value> = after.iter().filter(|e| e["person"] == "Mallory").collect();
    assert!(!mallory.is_empty(), "the forged event reached the log: {after:?}");
    assert!(mallory.iter().all(|e| e["door"] == "lab"), "printed as the lab's, whose login sent it: {mallory:?}");
    let listed = json(host_tool(&site, &["--json", "doors"]));
    assert!(listed["doors"]["front"]["online"] == true && listed["doors"]["front"]["people"] == 1, "{listed}");
    assert_eq!(listed["doors"]["lab"]["people"], 0, "the lab holds nobody it does not admit: {listed}");

    // The lab is stopped during three changes: Colin is removed, enrolled
    // again as a visitor, and visiting hours become one day, not today's
    // (the day after tomorrow, UTC: the site's zone). Back, the lab catches up:
    // it knows him as the visitor and refuses him by the schedule; the front
    // door drops him and does not receive the visitor.
    lab.stop();
    ok(host_tool(&site, &["remove", PERSON]));
    let visitor = "Colin_the_visitor";
    ok(host_tool(
        &site,
        &[&["enroll", visitor], &enrol.iter().map(String::as_str).collect::<Vec<_>>()[..], &["--group", "visitors"]].concat(),
    ));
    let today = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400 + 3) % 7;
    let other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(today as usize + 2) % 7];
    ok(host_tool(&site, &["schedule", "set", "visiting-hours", &format!("{other_day} 00:00-24:00")]));
    let lab = start_door(&doors[1], &broker, &approach);
    let synced = json(host_tool(&site, &["--json", "sync", "--wait", "--wait-s", "60"]));
    assert_eq!(synced["behind"], serde_json::json!([]), "{synced}");
    assert_eq!(synced["doors"]["front"]["people"], 0, "the front door dropped Colin: {synced}");
    assert_eq!(synced["doors"]["lab"]["people"], 1, "the lab has the visitor: {synced}");
    lab.wait_for("denied-schedule", Some(visitor), 60);
    // Frames recognised just before the change may still be deciding; then no grant anywhere.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = front.kinds("granted");
    let strangers = front.kinds("unknown");
    wait_until("the visitor, a stranger at the front door", 30, || front.kinds("unknown") > strangers);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(front.kinds("granted"), before, "a removed person is not let in");
    assert_eq!(lab.kinds("granted"), 0);
    front.stop();
    lab.stop();
}

/// `host-tool bench KIND ARGS --json --face PHOTO` with a photo of Colin
/// Powell and a local broker; `None` (after a loud skip) without either.
fn bench_with_a_face(kind: &str, args: &[&str]) -> Option<Value> {
    let dir = tempfile::tempdir().unwrap();
    let (enrol, _) = photos(dir.path())?;
    if facegate_localbroker_missing() {
        return None;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .arg("--models")
        .arg(facegate_testkit::models())
        .args(["bench", kind])
        .args(args)
        .args(["--json", "--face", &enrol[0]])
        .output()
        .unwrap();
    Some(json(out))
}

#[test]
fn bench_fleet_has_the_interface_and_loses_nothing_across_a_broker_kill_and_restart() {
    let args = ["--doors", "3", "--people", "60", "--seconds", "6", "--restart-broker", "--kill-broker"];
    let Some(figures) = bench_with_a_face("fleet", &args) else { return };
    for key in ["converged_s", "broker_bytes", "events_sent", "events_collected", "events_lost", "events_duplicated"] {
        assert!(figures[key].is_number(), "bench fleet --json lacks {key}: {figures}");
    }
    assert!(figures["converged_s"].as_f64().unwrap() < 60.0, "{figures}");
    // Killed mid-sync, the broker was repaired from what it still held.
    assert!(figures["broker_killed_mid_sync"] == true && figures["messages_republished"].is_u64(), "{figures}");
    assert!(figures["frame_loop_longest_gallery_wait_ms"].is_number(), "the doors' frame loops were measured: {figures}");
    assert!(figures["broker_bytes"].as_u64().unwrap() > 60 * 3 * 512, "at least the sealed templates went through: {figures}");
    assert!(figures["events_sent"].as_u64().unwrap() >= 3, "every door logs its site update at least: {figures}");
    assert_eq!(figures["events_lost"], 0, "{figures}");
    assert_eq!(figures["events_collected"], figures["events_sent"], "{figures}");
}

#[test]
fn bench_load_has_the_interface_and_loses_nothing_under_load() {
    let args = ["--minutes", "1", "--reference-minutes", "0.2", "--people", "40", "--templates", "2"];
    let Some(figures) = bench_with_a_face("load", &args) else { return };
    for key in ["longest_stall_ms", "reference_longest_stall_ms", "events_lost", "rss_growth_kb", "log_append_fsync_ms_per_event"]
    {
        assert!(figures[key].is_number(), "bench load --json lacks {key}: {figures}");
    }
    assert!(figures["frames"].as_u64().unwrap() > 0, "the camera ran: {figures}");
    assert!(figures["serial_cycles"].as_u64().unwrap() >= 2, "whole cycles over serial, memory sampled after each: {figures}");
    assert!(figures["site_version_applied"].as_u64().unwrap() >= 1, "the site was synced: {figures}");
    let numbered = figures["events_numbered"].as_u64().unwrap();
    assert!(numbered >= 80, "every enrolment and removal is an event: {figures}");
    assert_eq!(figures["events_lost"], 0, "{figures}");
    assert_eq!(figures["events_read_over_serial"], numbered, "the log read over serial holds every event: {figures}");
}

/// `hq.toml` in `dir`: site hq on `broker`, administered as admin, with the group staff.
fn site_with_staff(dir: &Path, broker: &facegate_testkit::broker::Broker) -> PathBuf {
    let site = dir.join("hq.toml");
    let (ca, url) = (broker.ca.display().to_string(), broker.url());
    ok(host_tool(
        &site,
        &["site", "init", "--name", "hq", "--broker", &url, "--ca", &ca, "--username", "admin", "--password", "pw-admin"],
    ));
    ok(host_tool(&site, &["group", "add", "staff"]));
    site
}

/// Whether mosquitto is missing (after a loud skip; a failure under CI).
fn facegate_localbroker_missing() -> bool {
    let dir = tempfile::tempdir().unwrap();
    facegate_testkit::broker::start(dir.path(), &[("probe", "probe")], "the fleet benchmark test").is_none()
}

#[test]
fn a_door_joins_its_site_over_its_serial_link_in_setup_mode_only() {
    use facegate_testkit::fleet::RunningDoor;
    let dir = tempfile::tempdir().unwrap();
    let Some((enrol, approach)) = photos(dir.path()) else { return };
    let users = [("admin", "pw-admin"), ("door-front", "pw-front")];
    let Some(broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the serial join test") else {
        return;
    };
    let site = site_with_staff(dir.path(), &broker);
    ok(host_tool(
        &site,
        &[&["enroll", PERSON], &enrol.iter().map(String::as_str).collect::<Vec<_>>()[..], &["--group", "staff"]].concat(),
    ));
    // A door with a config file and a serial link, started in setup mode; this host pairs with it.
    let d = dir.path().join("front");
    std::fs::create_dir_all(&d).unwrap();
    let config = d.join("facegate.toml");
    let p = d.display();
    std::fs::write(
        &config,
        format!(
            "[camera]\nfps = 5\n[recognition]\ncooldown_ms = 1500\n[liveness]\nmode = \"off\"\n[serial]\nport = \"pty\"\n\
             [paths]\nmodels = \"{}\"\ngallery = \"{p}/gallery.fg\"\nlog = \"{p}/access.log\"\npairing = \"{p}/pairing.fg\"\n\
             fleet_secrets = \"{p}/fleet.toml\"\nsite = \"{p}/site.fgsite\"\n",
            facegate_testkit::models().display()
        ),
    )
    .unwrap();
    let device = facegate_testkit::binary("device");
    let port = |door: &RunningDoor| {
        let mut found = None;
        wait_until("the door's serial path", 60, || {
            found = door.stderr().lines().find_map(|l| l.split("serial: ").nth(1).map(|p| p.trim().to_string()));
            found.is_some()
        });
        found.unwrap()
    };
    let home = dir.path().join("home");
    let host = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_host-tool"))
            .arg("--models")
            .arg(facegate_testkit::models())
            .args(args)
            .env("FACEGATE_HOME", &home)
            .output()
            .unwrap()
    };
    let door = RunningDoor::start_with_config(&device, &config, &approach, &["--setup"]);
    let tty = port(&door);
    ok(host(&["--port", &tty, "pair"]));
    let site_arg = site.display().to_string();
    let add = [
        "--site",
        &site_arg,
        "--port",
        &tty,
        "door",
        "add",
        "front",
        "--group",
        "staff",
        "--username",
        "door-front",
        "--password",
        "pw-front",
    ];
    ok(host(&add));
    let settings = std::fs::read_to_string(&config).unwrap();
    assert!(
        settings.contains("enabled = true") && settings.contains(&broker.url()),
        "the door's settings turn the link on: {settings}"
    );
    let secrets = d.join("fleet.toml");
    assert!(std::fs::read_to_string(&secrets).unwrap().contains("door-front"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o600, "secrets are private");
    }
    door.stop();
    // Restarted (no setup mode): it follows the site and lets Colin in.
    let door = RunningDoor::start_with_config(&device, &config, &approach, &[]);
    door.wait_for("site-synced", None, 60);
    door.wait_for("granted", Some(PERSON), 60);
    // Out of setup mode, nobody hands it another site, even a paired host.
    let tty = port(&door);
    let mut again = add;
    again[3] = &tty;
    let refused = host(&again);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("setup mode"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Nor turns the site off, points it at another broker, moves its files or
    // its serial link, or writes its gallery: each needs setup mode, and
    // nothing changes on disk.
    let settings = std::fs::read_to_string(&config).unwrap();
    let people = std::fs::read(d.join("gallery.fg")).unwrap();
    let photo = enrol[0].as_str();
    for change in [
        &["config", "set", "fleet.enabled", "false"][..],
        &["config", "set", "fleet.broker", "mqtts://127.0.0.1:1"],
        &["config", "set", "fleet.ca_file", "/tmp/rogue-ca.pem"],
        &["config", "set", "paths.gallery", "/tmp/other.fg"],
        &["config", "set", "serial.port", "/dev/ttyS9"],
        &["enroll", "Intruder", photo],
        &["remove", PERSON],
        &["rename", PERSON, "Someone"],
    ] {
        let out = host(&[&["--port", &tty][..], change].concat());
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("setup mode"),
            "{change:?} outside setup mode: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(&config).unwrap(), settings, "the settings are as they were");
    assert_eq!(std::fs::read(d.join("gallery.fg")).unwrap(), people, "the gallery is as it was");
    // Settings that do not move the door's authority are still a paired host's to change.
    ok(host(&["--port", &tty, "config", "set", "recognition.cooldown_ms", "2000"]));
    door.stop();
}

/// What `user` receives on `filter` within `wait` (retained messages included).
fn received(broker: &facegate_testkit::broker::Broker, user: &str, filter: &str) -> Vec<(String, Vec<u8>)> {
    let password = format!("pw-{}", user.trim_start_matches("door-"));
    let (client, mut connection) = broker.client(&format!("{user}-reader-{}", filter.len()), user, &password);
    client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
    let mut got = Vec::new();
    let end = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    while std::time::Instant::now() < end {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
            connection.recv_timeout(std::time::Duration::from_millis(100))
        {
            got.push((p.topic.clone(), p.payload.to_vec()));
        }
    }
    got
}

/// The broker's ACL from `host-tool acl`, a door's login against it, a
/// door's status as hostile input, a stale copy of the site state, and a
/// removed door's login (review rows 6, 8, 9, 12).
#[test]
fn a_door_login_is_held_by_the_sites_acl_and_a_stale_copy_of_the_site_state_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("admin", "pw-admin"), ("door-front", "pw-front"), ("door-lab", "pw-lab")];
    let Some(mut broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the site ACL test") else {
        return;
    };
    let site = site_with_staff(dir.path(), &broker);
    for door in ["front", "lab"] {
        let secrets = dir.path().join(format!("{door}.toml")).display().to_string();
        let (user, pw) = (format!("door-{door}"), format!("pw-{door}"));
        ok(host_tool(
            &site,
            &["door", "add", door, "--group", "staff", "--username", &user, "--password", &pw, "--secrets-out", &secrets],
        ));
    }
    let joined = facegate_site::DoorSecrets::from_toml(&std::fs::read_to_string(dir.path().join("lab.toml")).unwrap()).unwrap();
    assert_eq!(joined.min_version, 3, "the lab joined at the version that added it");
    let acl = String::from_utf8(ok(host_tool(&site, &["acl"])).stdout).unwrap();
    broker.use_acl(&acl);

    // The lab's login reads the site, and nothing of the front door's.
    assert!(
        received(&broker, "door-lab", "facegate/hq/manifest").iter().any(|(_, p)| !p.is_empty()),
        "the lab reads the manifest"
    );
    let front_status = br#"{"door": "front", "online": true, "version": 4, "time": "2026-12-07T08:00:00.000Z"}"#.to_vec();
    broker.publish("door-front", "pw-front", &[("facegate/hq/doors/front/status".into(), front_status)], true);
    assert!(!received(&broker, "admin", "facegate/hq/doors/front/status").is_empty(), "the front door writes its status");
    assert!(received(&broker, "door-lab", "facegate/hq/doors/+/status").is_empty(), "the lab reads no door's status");
    assert!(received(&broker, "door-lab", "facegate/hq/doors/front/events").is_empty());
    // It writes no other door's topics, no record, no manifest, no resend request.
    let evil: Vec<(String, Vec<u8>)> =
        ["doors/front/events", "doors/front/status", "people/p-evil", "manifest", "doors/front/resend"]
            .iter()
            .map(|t| (format!("facegate/hq/{t}"), br#"{"door": "front", "seq": 1, "from": 1}"#.to_vec()))
            .collect();
    let watched = received(&broker, "admin", "facegate/hq/#");
    broker.publish("door-lab", "pw-lab", &evil, true);
    let after = received(&broker, "admin", "facegate/hq/#");
    assert_eq!(after, watched, "nothing the lab's login wrote outside its own topics reached the broker");

    // Its own status, as hostile input: a log said to start near 2^62, then 17 MiB.
    let far = format!(r#"{{"door": "lab", "online": true, "events_first": {0}, "events_last": {0}}}"#, 1u64 << 62);
    broker.publish("door-lab", "pw-lab", &[("facegate/hq/doors/lab/status".into(), far.into_bytes())], true);
    let listed = host_tool(&site, &["--json", "doors"]);
    let doors: Value = serde_json::from_slice(&ok(listed.clone()).stdout).unwrap();
    assert!(doors["doors"]["lab"].is_null() && doors["doors"]["front"]["version"] == 4, "{doors}");
    assert!(String::from_utf8_lossy(&listed.stderr).contains("2^53"), "the refused status is named");
    let started = std::time::Instant::now();
    ok(host_tool(&site, &["--json", "log"]));
    assert!(started.elapsed().as_secs() < 30, "log ends");
    // A client that would send it (the site's own clients never send more than the broker takes).
    let mut options = rumqttc::MqttOptions::new("lab-huge", "localhost", broker.port);
    options.set_credentials("door-lab", "pw-lab");
    options.set_max_packet_size(32 << 20, 32 << 20);
    let tls = facegate_site::mqtt::tls(&broker.ca.display().to_string()).unwrap();
    options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls))));
    let (huge, mut connection) = rumqttc::Client::new(options, 10);
    let _ = huge.publish("facegate/hq/doors/lab/status", rumqttc::QoS::AtLeastOnce, true, vec![b' '; 17 << 20]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < end {
        let _ = connection.recv_timeout(std::time::Duration::from_millis(100));
    }
    let doors = json(host_tool(&site, &["--json", "doors"]));
    assert_eq!(doors["doors"]["front"]["version"], 4, "a 17 MiB status stops nothing: {doors}");

    // A copy of the site state from before the last change publishes nothing.
    let state = dir.path().join("hq.state");
    let backup = std::fs::read(&state).unwrap();
    ok(host_tool(&site, &["group", "add", "visitors"]));
    let manifest = || received(&broker, "admin", "facegate/hq/manifest");
    let newest = manifest();
    let newest_state = std::fs::read(&state).unwrap();
    std::fs::write(&state, &backup).unwrap();
    for args in [&["group", "add", "contractors"][..], &["sync"][..]] {
        let stale = host_tool(&site, args);
        assert!(!stale.status.success(), "{args:?} from a stale state");
        assert!(String::from_utf8_lossy(&stale.stderr).contains("did not publish"), "{}", String::from_utf8_lossy(&stale.stderr));
    }
    assert_eq!(manifest(), newest, "the broker still holds the newest version");

    // A removed door: the host tool says how to revoke its login, and the new ACL shuts it out.
    std::fs::write(&state, &newest_state).unwrap();
    let removed = String::from_utf8(ok(host_tool(&site, &["door", "remove", "front"])).stdout).unwrap();
    assert!(removed.contains("mosquitto_passwd -D PASSWORD_FILE door-front"), "{removed}");
    broker.use_acl(&String::from_utf8(ok(host_tool(&site, &["acl"])).stdout).unwrap());
    assert!(received(&broker, "door-front", "facegate/hq/manifest").is_empty(), "the removed door reads nothing");
    assert!(!received(&broker, "door-lab", "facegate/hq/manifest").is_empty(), "the lab still does");
}

#[test]
fn a_site_holds_both_networks_templates_and_switches_networks_without_calling_everyone_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some((enrol, _)) = photos(dir.path()) else { return };
    let Some(broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &[("admin", "pw-admin")], "the site test")
    else {
        return;
    };
    let site = dir.path().join("hq.toml");
    let (ca, url) = (broker.ca.display().to_string(), broker.url());
    ok(host_tool(
        &site,
        &[
            "--network",
            "dlib",
            "site",
            "init",
            "--name",
            "hq",
            "--broker",
            &url,
            "--ca",
            &ca,
            "--username",
            "admin",
            "--password",
            "pw-admin",
        ],
    ));
    let photos: Vec<&str> = enrol.iter().map(String::as_str).collect();
    let enroll =
        |name: &str, network: &[&str]| json(host_tool(&site, &[&["--json"], network, &["enroll", name], &photos[..]].concat()));
    let networks = || json(host_tool(&site, &["--json", "networks"]));
    let names = |v: &Value| {
        v["networks"].as_array().unwrap().iter().map(|n| n["network"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    // Ada with the site's network only: sface is nowhere, and the site cannot take it.
    assert_eq!(names(&enroll("Ada", &[])), ["dlib"]);
    assert_eq!(names(&networks()), ["dlib"]);
    let refused = host_tool(&site, &["networks", "use", "sface"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--network both"));
    // Colin with both: the site now holds sface for him, not for Ada.
    let colin = enroll(PERSON, &["--network", "both"]);
    assert_eq!(names(&colin), ["dlib", "sface"], "{colin}");
    assert_eq!(colin["networks"][1]["templates"], 3, "{colin}");
    let held = networks();
    assert_eq!((held["people"].as_u64(), held["networks"][0]["site"].as_bool()), (Some(2), Some(true)), "{held}");
    assert_eq!(held["networks"][1]["people"], 1);
    assert_eq!(held["networks"][1]["missing"], serde_json::json!(["Ada"]));
    let refused = host_tool(&site, &["networks", "use", "sface"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Ada"), "Ada has no sface templates");
    assert_eq!(networks(), held, "a refused switch changes nothing");
    // A newcomer (or Ada again) gets every network the site holds, unasked.
    assert_eq!(names(&enroll("Ada", &[])), ["dlib", "sface"]);
    ok(host_tool(&site, &["networks", "use", "sface"]));
    let switched = networks();
    assert_eq!(names(&switched), ["sface", "dlib"], "{switched}");
    assert_eq!((switched["networks"][0]["site"].as_bool(), switched["networks"][1]["people"].as_u64()), (Some(true), Some(2)));
    // Nobody was enrolled again: the manifest at the broker names sface as the site's network, dlib beside it.
    let retained = received(&broker, "admin", "facegate/hq/manifest");
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(&site).unwrap()).unwrap();
    let admin = facegate_site::AdminKey::from_bytes(&facegate_core::from_hex(config["admin_key"].as_str().unwrap()).unwrap());
    let manifest = admin.public().open("facegate/hq/manifest", &retained[0].1).unwrap();
    let manifest = facegate_site::Manifest::from_bytes(manifest).unwrap();
    assert_eq!(manifest.model.to_hex(), switched["networks"][0]["model"].as_str().unwrap());
    assert_eq!(
        manifest.others.iter().map(|m| m.to_hex()).collect::<Vec<_>>(),
        [switched["networks"][1]["model"].as_str().unwrap()]
    );
}
