//! The device and host-tool binaries over a pseudo-terminal: every command,
//! then hostile input (garbage, damaged frames, replays, forgeries, unpaired
//! hosts) that must change nothing while the device stays up and locked.

use facegate_protocol::auth::sign_request;
use facegate_protocol::link::Link;
use facegate_protocol::message::{to_bytes, Auth, RequestFrame, ResponseFrame};
use facegate_protocol::{frame, Request, Response, WireError, PROTOCOL_VERSION};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn workspace() -> &'static Path {
    facegate_testkit::workspace()
}

fn device_bin() -> PathBuf {
    facegate_testkit::binary("device")
}

/// LFW, unpacked once per test run under the target directory.
fn lfw() -> Option<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lfw-provisioning");
    facegate_testkit::lfw_photos(&out, &["Colin_Powell", "Tony_Blair", "George_W_Bush"], 12, "the provisioning commands")
}

struct Device {
    child: Child,
    port: String,
    events: std::sync::mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Device {
    fn start(frames: &Path, extra: &[&str]) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(device_bin())
            .args(["run", "--lock", "sim", "--serial", "pty", "--setup", "--events-json"])
            .arg("--source")
            .arg(format!("replay:{}", frames.display()))
            .arg("--gallery")
            .arg(dir.path().join("gallery.fg"))
            .args(["--models", workspace().join("models").to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(p) = line.strip_prefix("serial: ") {
                    let _ = tx.send(p.to_string());
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).expect("the device printed its serial path");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (etx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        Device { child, port, events, dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Runs host-tool; returns (success, stdout, stderr).
    fn host(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
            .args(["--port", &self.port])
            .args(args)
            .env("FACEGATE_HOME", self.home())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, out, err) = self.host(&a);
        assert!(ok, "host-tool {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("host-tool {args:?}: not JSON ({e}): {out}"))
    }

    /// Relay states printed so far (and still running?).
    fn relay_states(&self) -> Vec<String> {
        let mut states = Vec::new();
        while let Ok(line) = self.events.try_recv() {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["kind"] == "relay" {
                states.push(v["state"].as_str().unwrap().to_string());
            }
        }
        states
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn names(people: &Value) -> Vec<String> {
    people.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_command_over_a_pseudo_terminal() {
    let Some(lfw) = lfw() else {
        eprintln!(
            "SKIPPED: LFW not found (../shared/datasets/lfw or FACEGATE_LFW_DIR); the provisioning commands were NOT tested"
        );
        return;
    };
    let frames = tempfile::tempdir().unwrap();
    std::fs::copy(lfw.join("George_W_Bush/George_W_Bush_0001.jpg"), frames.path().join("0.jpg")).unwrap();
    let mut dev = Device::start(frames.path(), &["--replay-loop"]);
    let photo = |p: &str, i: u32| lfw.join(facegate_lfw::image_path(p, i)).to_string_lossy().into_owned();

    // Before pairing, nothing but hello and pair is answered.
    let (ok, _, err) = dev.host(&["people"]);
    assert!(!ok && err.contains("hint:"), "{err}");
    let paired = dev.ok_json(&["pair"]);
    assert_eq!(paired["device"].as_str().unwrap().len(), 32);

    let colin: Vec<String> = (1..=3).map(|i| photo("Colin_Powell", i)).collect();
    let mut args = vec!["enroll", "Colin"];
    args.extend(colin.iter().map(String::as_str));
    let r = dev.ok_json(&args);
    assert!(r["id"].as_u64().unwrap() > 0, "{r}");
    let (ok, _, err) = dev.host(&["enroll", "Colin", &photo("Colin_Powell", 4)]);
    assert!(!ok && err.contains("already enrolled"), "{err}");
    let (ok, _, err) = dev.host(&["enroll", "Nobody", "/etc/hostname"]);
    assert!(!ok && err.contains("not a readable image"), "{err}");

    let people = dev.ok_json(&["people"]);
    assert_eq!(people[0]["name"], "Colin");
    assert_eq!(people[0]["templates"], 3);

    let v = dev.ok_json(&["verify", "Colin", &photo("Colin_Powell", 7)]);
    assert_eq!(v["accepted"], true, "{v}");
    let v = dev.ok_json(&["verify", "Colin", &photo("Tony_Blair", 1)]);
    assert_eq!(v["accepted"], false, "{v}");
    let v = dev.ok_json(&["identify", &photo("Tony_Blair", 2)]);
    assert_eq!(v["person"], Value::Null, "a stranger is not enrolled: {v}");

    // The device captures its own frames (the replayed camera shows one face).
    let r = dev.ok_json(&["enroll", "George", "--on-device", "3"]);
    assert!(r["id"].as_u64().is_some(), "{r}");
    assert_eq!(names(&dev.ok_json(&["people"])), vec!["Colin", "George"]);

    dev.ok_json(&["rename", "George", "GWB"]);
    let (ok, _, err) = dev.host(&["rename", "Nobody", "X"]);
    assert!(!ok && err.contains("Nobody"), "{err}");

    assert_eq!(dev.ok_json(&["config", "get", "recognition.frames_agree"])["recognition.frames_agree"], "3");
    let s = dev.ok_json(&["config", "set", "recognition.frames_agree", "2"]);
    assert_eq!(s["restart_needed"], false);
    let (ok, _, err) = dev.host(&["config", "set", "recognition.frames_agree", "99"]);
    assert!(!ok && err.contains("frames_agree"), "validated by the device: {err}");
    assert_eq!(dev.ok_json(&["config", "get", "recognition.frames_agree"])["recognition.frames_agree"], "2");

    let status = dev.ok_json(&["status"]);
    assert_eq!(status["people"], 2);
    assert_eq!(status["model"].as_str().unwrap().len(), 64);
    assert!(dev.ok_json(&["ports"]).is_array());

    // backup → wipe → restore gives the same gallery; a damaged file changes nothing.
    let backup = dev.dir.path().join("backup.fg");
    let before = dev.ok_json(&["people"]);
    dev.ok_json(&["backup", backup.to_str().unwrap()]);
    dev.ok_json(&["remove", "Colin"]);
    dev.ok_json(&["remove", "GWB"]);
    assert_eq!(dev.ok_json(&["people"]), serde_json::json!([]));
    let mut damaged = std::fs::read(&backup).unwrap();
    let n = damaged.len();
    damaged[n - 10] ^= 0xff;
    let bad = dev.dir.path().join("damaged.fg");
    std::fs::write(&bad, &damaged).unwrap();
    let (ok, _, err) = dev.host(&["restore", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("damaged"), "{err}");
    assert_eq!(dev.ok_json(&["people"]), serde_json::json!([]), "nothing changed");
    dev.ok_json(&["restore", backup.to_str().unwrap()]);
    assert_eq!(dev.ok_json(&["people"]), before);

    dev.ok_json(&["unlock"]);
    std::thread::sleep(Duration::from_millis(300));
    let log = dev.ok_json(&["log"]);
    let kinds: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["paired", "enrolled", "renamed", "config-changed", "removed", "restored", "remote-unlock"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(log[0]["time"].as_str().unwrap().ends_with('Z') && log[0]["seq"].as_u64().is_some());
    let recent = dev.ok_json(&["log", "--since", "1h"]);
    assert_eq!(recent.as_array().unwrap().len(), log.as_array().unwrap().len());
    let future = dev.ok_json(&["log", "--since", "2999-01-01"]);
    assert_eq!(future, serde_json::json!([]));
    dev.ok_json(&["log", "clear"]);
    let kinds: Vec<Value> = dev.ok_json(&["log"]).as_array().unwrap().iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, vec![Value::from("log-cleared")]);

    dev.ok_json(&["unpair"]);
    let (ok, _, _) = dev.host(&["people"]);
    assert!(!ok, "unpaired hosts are refused");
    assert!(dev.running());
    assert!(dev.relay_states().contains(&"unlocked".to_string()), "the remote unlock reached the relay");
}

/// Sends raw bytes on the device's port; returns the decoded answer.
fn exchange(link: &mut Link<Box<dyn serialport::SerialPort>>, wire: &[u8]) -> (u32, Result<Response, WireError>) {
    link.write_raw(wire).unwrap();
    let payload = link.recv(Duration::from_secs(5)).unwrap().unwrap();
    let f: ResponseFrame = postcard::from_bytes(&payload).unwrap();
    (f.id, postcard::from_bytes(&f.body).unwrap())
}

#[test]
fn hostile_input_changes_nothing_and_the_door_stays_locked() {
    let frames = tempfile::tempdir().unwrap();
    image::RgbImage::new(64, 64).save(frames.path().join("0.png")).unwrap();
    let mut dev = Device::start(frames.path(), &[]);
    dev.ok_json(&["pair"]);
    let gallery = dev.dir.path().join("gallery.fg");
    // Enrol one person offline-style through the device so a gallery file exists.
    let secret_file = std::fs::read_dir(dev.home().join("devices")).unwrap().next().unwrap().unwrap().path();
    let key: Value = serde_json::from_str(&std::fs::read_to_string(secret_file).unwrap()).unwrap();
    let secret: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&key["secret"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let host: [u8; 16] = (0..16)
        .map(|i| u8::from_str_radix(&std::fs::read_to_string(dev.home().join("host.id")).unwrap()[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();

    let port = serialport::new(&dev.port, 115_200).timeout(Duration::from_millis(100)).open().unwrap();
    let mut link = Link::new(port);
    link.write_raw(&[0]).unwrap();
    let framed = |payload: &[u8]| {
        let mut w = Vec::new();
        frame::encode(payload, &mut w).unwrap();
        w
    };
    let signed = |id: u32, counter: u64, req: &Request| {
        let body = to_bytes(req);
        let mac = sign_request(&secret, PROTOCOL_VERSION, id, &host, counter, &body);
        to_bytes(&RequestFrame { version: PROTOCOL_VERSION, id, auth: Some(Auth { host, counter, mac }), body })
    };
    let hello = framed(&to_bytes(&RequestFrame {
        version: PROTOCOL_VERSION,
        id: 1,
        auth: None,
        body: to_bytes(&Request::Hello { host }),
    }));
    let Response::Hello(h) = exchange(&mut link, &hello).1.unwrap() else { panic!("hello") };
    let c = h.counter_floor + 1;
    let clear = framed(&signed(2, c, &Request::LogClear));
    assert_eq!(exchange(&mut link, &clear), (2, Ok(Response::Done)));
    // Replay of that very frame.
    assert!(matches!(exchange(&mut link, &clear), (2, Err(WireError::Replay { .. }))));
    // Forged: a changed request under a valid-looking MAC.
    let mut forged: RequestFrame = postcard::from_bytes(&signed(3, c + 100, &Request::Remove { name: "x".into() })).unwrap();
    forged.body = to_bytes(&Request::Unlock);
    assert_eq!(exchange(&mut link, &framed(&to_bytes(&forged))), (3, Err(WireError::BadMac)));
    // Unpaired host.
    let mut stranger: RequestFrame = postcard::from_bytes(&signed(4, c + 101, &Request::Unlock)).unwrap();
    stranger.auth.as_mut().unwrap().host = [0xee; 16];
    assert_eq!(exchange(&mut link, &framed(&to_bytes(&stranger))), (4, Err(WireError::NotPaired)));
    let plain = to_bytes(&RequestFrame { version: PROTOCOL_VERSION, id: 5, auth: None, body: to_bytes(&Request::Unlock) });
    assert_eq!(exchange(&mut link, &framed(&plain)), (5, Err(WireError::NotPaired)));
    // Wrong version.
    let mut future: RequestFrame = postcard::from_bytes(&signed(6, c + 102, &Request::Unlock)).unwrap();
    future.version = 99;
    assert!(matches!(
        exchange(&mut link, &framed(&to_bytes(&future))),
        (6, Err(WireError::VersionMismatch { device: PROTOCOL_VERSION, host: 99 }))
    ));
    // Garbage, flipped bit, truncation, oversize.
    assert!(matches!(exchange(&mut link, b"\xff\xfe garbage \x13\x00"), (0, Err(WireError::Malformed(_)))));
    let mut flipped = framed(&signed(7, c + 103, &Request::Unlock));
    let k = flipped.len() / 2;
    flipped[k] = if flipped[k] == 0x01 { 0x03 } else { 0x01 };
    assert!(matches!(exchange(&mut link, &flipped), (0, Err(WireError::Malformed(_)))));
    let whole = framed(&signed(8, c + 104, &Request::Unlock));
    assert!(matches!(exchange(&mut link, &[&whole[..whole.len() / 2], &[0]].concat()), (0, Err(WireError::Malformed(_)))));
    let huge = vec![0x42u8; 20_000];
    assert!(matches!(exchange(&mut link, &[&huge[..], &[0]].concat()), (0, Err(WireError::Malformed(_)))));
    drop(link);

    // Nothing changed: no unlock, no gallery, the refusals were logged, the device is up.
    assert!(!gallery.exists(), "no gallery was written");
    let log = dev.ok_json(&["log"]);
    let refused = log.as_array().unwrap().iter().filter(|e| e["kind"] == "refused").count();
    assert!(refused >= 4, "replay, bad MAC, two unpaired: {log}");
    assert_eq!(log[0]["kind"], "log-cleared", "the one authentic request took effect once: {log}");
    assert!(dev.running());
    let states = dev.relay_states();
    assert!(!states.is_empty() && states.iter().all(|s| s == "locked"), "the door stayed locked: {states:?}");
    // And it still serves a proper request.
    assert_eq!(dev.ok_json(&["people"]), serde_json::json!([]));
}

#[test]
fn offline_gallery_file_mode() {
    let Some(lfw) = lfw() else {
        eprintln!("SKIPPED: LFW not found; offline --gallery mode was NOT tested");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("sd-card.fg");
    let run = |args: &[&str]| {
        let out =
            Command::new(env!("CARGO_BIN_EXE_host-tool")).arg("--gallery").arg(&g).args(args).arg("--json").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let p = |i| lfw.join(facegate_lfw::image_path("Tony_Blair", i)).to_string_lossy().into_owned();
    run(&["enroll", "Tony", &p(3), &p(4), &p(5)]);
    assert_eq!(run(&["people"])[0]["templates"], 3);
    assert_eq!(run(&["verify", "Tony", &p(9)])["accepted"], true);
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool")).arg("--gallery").arg(&g).args(["unlock"]).output().unwrap();
    assert!(!out.status.success(), "unlock needs a device");

    // Many photos in one run: one JSON line per photo, in the order given; a
    // photo without a face is reported and the others still answered.
    let blank = dir.path().join("blank.png");
    image::RgbImage::new(200, 200).save(&blank).unwrap();
    let colin = lfw.join(facegate_lfw::image_path("Colin_Powell", 1)).to_string_lossy().into_owned();
    let photos = [p(9), colin.clone(), blank.to_string_lossy().into_owned(), p(10)];
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .arg("--gallery")
        .arg(&g)
        .arg("identify")
        .args(&photos)
        .arg("--json")
        .output()
        .unwrap();
    assert!(!out.status.success(), "one photo had no face");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, photo) in lines.iter().zip(&photos) {
        assert_eq!(line["photo"].as_str(), Some(photo.as_str()));
    }
    assert_eq!(lines[0]["person"], "Tony");
    assert!(lines[0]["error"].is_null() && lines[0]["distance"].as_f64().unwrap() < 0.52);
    assert!(lines[1]["person"].is_null(), "a stranger is not enrolled: {}", lines[1]);
    assert!(lines[1]["distance"].as_f64().unwrap() >= 0.52);
    assert!(lines[2]["distance"].is_null() && lines[2]["error"].as_str().unwrap().contains("no face"), "{}", lines[2]);
    assert_eq!(lines[3]["person"], "Tony");
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .arg("--gallery")
        .arg(&g)
        .args(["verify", "Tony", &p(9), &colin, "--json"])
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["accepted"].as_bool(), lines[1]["accepted"].as_bool()), (Some(true), Some(false)));
    run(&["remove", "Tony"]);
    assert_eq!(run(&["people"]), serde_json::json!([]));
    // The file is a device gallery.
    assert!(facegate_store::Gallery::load(&g).is_ok());
}
