#![warn(missing_docs)]
//! Test support shared by every crate's tests: where the workspace, its
//! models, the shared LFW copy and the built programs are. Data a test needs
//! and cannot find makes it skip loudly (`SKIPPED: …` on stderr), never pass
//! silently.

use std::path::{Path, PathBuf};

/// The local broker for fleet tests.
pub mod broker {
    pub use facegate_localbroker::broker::Broker;

    /// A broker in `dir` with these logins, or `None` after a loud skip of
    /// `what` when mosquitto is not installed (a failure under CI, where
    /// `.ci/run` installs it).
    pub fn start(dir: &std::path::Path, users: &[(&str, &str)], what: &str) -> Option<Broker> {
        match Broker::start(dir, users) {
            Ok(b) => Some(b),
            Err(why) if std::env::var_os("CI").is_some() => panic!("{why}: .ci/run installs it"),
            Err(why) => {
                crate::skip(what, &why);
                None
            }
        }
    }
}

/// A real browser for the console's tests: Debian's chromium, headless,
/// through chromedriver (WebDriver).
pub mod browser {
    pub use fantoccini;
    use std::process::{Child, Command, Stdio};

    /// A running chromedriver (stopped when dropped) and its WebDriver URL.
    pub struct Driver {
        child: Child,
        /// `http://127.0.0.1:PORT`.
        pub url: String,
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// chromedriver on a free port, or `None` after a loud skip of `what`
    /// when chromium or chromedriver is missing (a failure under CI, where
    /// `.ci/run` installs them).
    pub fn chromedriver(what: &str) -> Option<Driver> {
        let missing = |why: String| {
            assert!(std::env::var_os("CI").is_none(), "{why}: .ci/run installs chromium and chromium-driver");
            crate::skip(what, &why);
            None
        };
        if !std::path::Path::new(CHROMIUM).exists() {
            return missing(format!("{CHROMIUM} is not installed (Debian's chromium)"));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => return missing(format!("chromedriver does not start ({e}; Debian's chromium-driver)")),
        };
        let addr = format!("127.0.0.1:{port}");
        super::fleet::wait_until("chromedriver", 20, || std::net::TcpStream::connect(&addr).is_ok());
        Some(Driver { child, url: format!("http://{addr}") })
    }

    /// Debian's chromium.
    pub const CHROMIUM: &str = "/usr/bin/chromium";

    /// A headless chromium session (1280×900) through `driver`.
    pub async fn session(driver: &Driver) -> fantoccini::Client {
        let mut capabilities = serde_json::Map::new();
        let options = serde_json::json!({"binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]});
        capabilities.insert("goog:chromeOptions".into(), options);
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a chromium session")
    }
}

/// Site doors for fleet tests.
pub mod fleet {
    pub use facegate_localbroker::doors::{collect, wait_until, DoorReplay, RunningDoor};

    /// This workspace's `device` program as a door of the site in `dir`
    /// (which holds its secrets), replaying `approach` in a loop at 5 fps.
    pub fn start_door(dir: &std::path::Path, broker: &super::broker::Broker, approach: &std::path::Path) -> RunningDoor {
        start_door_with(dir, broker, approach, &[])
    }

    /// [`start_door`] with `extra` arguments to `device run` (e.g. `--clock-start T`).
    pub fn start_door_with(
        dir: &std::path::Path,
        broker: &super::broker::Broker,
        approach: &std::path::Path,
        extra: &[&str],
    ) -> RunningDoor {
        let replay = facegate_localbroker::doors::DoorReplay { fps: 5, network: None };
        RunningDoor::start(&crate::binary("device"), &crate::models(), dir, broker, approach, replay, extra)
    }
}

pub use facegate_lfw::Dataset;

/// The workspace root.
pub fn workspace() -> &'static Path {
    // testkit lives in <workspace>/crates/testkit.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The workspace's `models/` directory.
pub fn models() -> PathBuf {
    workspace().join("models")
}

/// Says loudly on stderr that `what` was not run, and why.
pub fn skip(what: &str, why: &str) {
    eprintln!("SKIPPED: {why}; {what} not run");
}

/// `../shared/<relative>` beside the workspace, or `None` after a loud skip of `what`.
pub fn shared_dir(relative: &str, what: &str) -> Option<PathBuf> {
    let dir = workspace().join("../shared").join(relative);
    if dir.is_dir() {
        return Some(dir);
    }
    skip(what, &format!("../shared/{relative} not found"));
    None
}

/// The shared LFW copy (`$FACEGATE_LFW_DIR`, else `../shared/datasets/lfw`)
/// opened, with its `pairs.txt` path, or `None` after a loud skip of `what`.
pub fn lfw(what: &str) -> Option<(Dataset, PathBuf)> {
    facegate_lfw::open_or_skip(workspace(), what)
}

/// The `(images, pairs.txt)` paths of the shared LFW copy, or `None` after a loud skip of `what`.
pub fn lfw_paths(what: &str) -> Option<(PathBuf, PathBuf)> {
    let found = facegate_lfw::locate(workspace());
    if found.is_none() {
        skip(what, "LFW not found (../shared/datasets/lfw or $FACEGATE_LFW_DIR)");
    }
    found
}

/// A program of the workspace built beside the running test (`target/<profile>/NAME`).
/// Panics with a hint when it was not built (`cargo test --workspace` builds them all).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // Tests run from target/<profile>/deps/.
    let dir = exe.parent().and_then(Path::parent).expect("a test binary lives in target/<profile>/deps");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: run the tests with --workspace (or build it first)", bin.display());
    bin
}

/// LFW photos of `people` (photos 1..=`per_person`) unpacked once under `dir`,
/// for programs that take photo files; `None` after a loud skip of `what`.
pub fn lfw_photos(dir: &Path, people: &[&str], per_person: u32, what: &str) -> Option<PathBuf> {
    let (images, _) = lfw_paths(what)?;
    if images.is_dir() {
        return Some(images);
    }
    let out = dir.join("lfw");
    if !people.iter().all(|p| out.join(p).is_dir()) {
        let data = Dataset::open(&images).expect("the shared LFW copy opens");
        for person in people {
            for i in 1..=per_person {
                let rel = facegate_lfw::image_path(person, i);
                let dest = out.join(&rel);
                std::fs::create_dir_all(dest.parent().expect("a photo is in a folder")).expect("creating the photo folder");
                std::fs::write(&dest, data.read(&rel).expect("reading an LFW photo")).expect("writing an LFW photo");
            }
        }
    }
    Some(out)
}

/// The first `count` LFW people with at least four photos, their photos 1–4
/// copied to `dir` in LFW's layout (one folder per person): a small set of
/// known faces for the training and benchmark programs. Their names, or
/// `None` after a loud skip of `what`.
pub fn lfw_people_with_four_photos(dir: &Path, count: usize, what: &str) -> Option<Vec<String>> {
    let (data, _) = lfw(what)?;
    let names = data.names().expect("the shared LFW copy lists its photos");
    let mut people: Vec<&str> = names.iter().filter(|n| n.ends_with("_0004.jpg")).filter_map(|n| n.split('/').next()).collect();
    people.truncate(count);
    for p in &people {
        std::fs::create_dir_all(dir.join(p)).expect("creating the person's folder");
        for i in 1..=4 {
            let rel = facegate_lfw::image_path(p, i);
            std::fs::write(dir.join(&rel), data.read(&rel).expect("reading an LFW photo")).expect("writing an LFW photo");
        }
    }
    Some(people.iter().map(|p| p.to_string()).collect())
}

/// A pairs.txt in LFW's layout over people from
/// [`lfw_people_with_four_photos`]: two folds of `people.len() / 2` people;
/// in each, half the people give a same-person pair (photos 1 and 2) and
/// each of those is paired with one of the other half (photos 3 and 4).
pub fn two_fold_pairs(people: &[String]) -> String {
    let per_fold = people.len() / 2;
    let half = per_fold / 2;
    let mut pairs = format!("2\t{half}\n");
    for fold in people.chunks(per_fold).take(2) {
        for p in &fold[..half] {
            pairs += &format!("{p}\t1\t2\n");
        }
        for k in 0..half {
            pairs += &format!("{}\t3\t{}\t4\n", fold[k], fold[k + half]);
        }
    }
    pairs
}

/// `device run` on a replay of `frames` with a simulated lock, the gallery
/// `gallery`, the workspace's models, no access log, and one JSON object per
/// event on stdout, stopping when the replay ends. Add further flags as needed.
pub fn device_replay(frames: &Path, gallery: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(binary("device"));
    c.args(["run", "--lock", "sim", "--until-end", "--events-json", "--log", "none", "--models"])
        .arg(models())
        .arg("--gallery")
        .arg(gallery)
        .arg("--source")
        .arg(format!("replay:{}", frames.display()));
    c
}

/// The JSON objects of a program's stdout, one per line.
pub fn json_lines<T: std::str::FromStr>(stdout: &[u8]) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    String::from_utf8_lossy(stdout).lines().map(|l| l.parse().expect("one JSON object per line")).collect()
}
