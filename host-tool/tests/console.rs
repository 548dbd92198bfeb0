//! `host-tool --site SITE.toml console`: the password set from standard
//! input and stored hashed, every page behind a login, the login form's CSRF
//! token, paused logins after failures, logout; and with a real broker and a
//! real door on an LFW replay, the door's status on the Doors page and its
//! grant arriving on the live event stream.

use facegate_testkit::fleet::start_door;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "a door is a door is a door";

/// `host-tool --models MODELS --site SITE ARGS…`.
fn site_command(site: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host-tool"));
    command.arg("--models").arg(facegate_testkit::models()).arg("--site").arg(site).args(args);
    command
}

fn host_tool(site: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = site_command(site, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    out
}

/// A running console and the address it serves.
struct Console {
    child: Child,
    addr: String,
}

impl Console {
    fn start(site: &Path) -> Console {
        Self::start_with(site, &["console", "--listen", "127.0.0.1:0"], &[])
    }

    /// `host-tool --site SITE ARGS…` (the console's command among them), with `env`.
    fn start_with(site: &Path, args: &[&str], env: &[(&str, &Path)]) -> Console {
        let mut child =
            site_command(site, args).envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_else(|| panic!("{line:?}"));
        Console { addr: addr.to_string(), child }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The value the reply sets for cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.strip_prefix(&format!("{name}="))?.split(';').next().map(str::to_string))
    }

    /// The CSRF token of the page's form.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF field") + 19;
        self.body[at..at + 64].to_string()
    }
}

fn http(addr: &str, method: &str, path: &str, cookies: &str, form: Option<&str>) -> Reply {
    exchange(TcpStream::connect(addr).unwrap(), addr, method, path, cookies, form)
}

/// One HTTP/1.1 exchange over `stream` (plain or TLS).
fn exchange(stream: impl Read + Write, addr: &str, method: &str, path: &str, cookies: &str, form: Option<&str>) -> Reply {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f.as_bytes()));
    send(stream, addr, method, path, cookies, body)
}

/// A request with a body of a content type (`None`: no body).
fn send(
    mut stream: impl Read + Write,
    addr: &str,
    method: &str,
    path: &str,
    cookies: &str,
    body: Option<(&str, &[u8])>,
) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookies.is_empty() {
        request += &format!("Cookie: {cookies}\r\n");
    }
    if let Some((content_type, bytes)) = body {
        request += &format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", bytes.len());
    }
    let mut bytes = format!("{request}\r\n").into_bytes();
    bytes.extend_from_slice(body.map_or(&[][..], |(_, b)| b));
    // A server refusing early may close before the whole body is written.
    let _ = stream.write_all(&bytes);
    // To the end (a TLS peer may close without its close_notify: what came is kept).
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Reply { status, headers, body: body.to_string() }
}

/// A multipart form of text fields and files (`(name, file name, bytes)`).
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "facegate-test-boundary-7e3f";
    let mut body = Vec::new();
    for (name, file, bytes) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes());
        if let Some(file) = file {
            body.extend(format!("; filename=\"{file}\"\r\nContent-Type: image/jpeg").bytes());
        }
        body.extend(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn form_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in with `password`: the reply, and the session cookie when one was given.
fn login(addr: &str, password: &str) -> (Reply, Option<String>) {
    let form = http(addr, "GET", "/login", "", None);
    let token = form.cookie("facegate_login_csrf").expect("the login form sets its CSRF cookie");
    let body = format!("password={}&csrf={}", form_value(password), form.csrf());
    let reply = http(addr, "POST", "/login", &format!("facegate_login_csrf={token}"), Some(&body));
    let session = reply.cookie("facegate_session").filter(|s| !s.is_empty());
    (reply, session)
}

fn site_without_broker(dir: &Path) -> std::path::PathBuf {
    let site = dir.join("hq.toml");
    let args = ["site", "init", "--name", "hq", "--broker", "mqtts://127.0.0.1:9", "--username", "admin", "--password", "pw"];
    ok(host_tool(&site, &args, None));
    site
}

#[test]
fn every_page_is_behind_a_login_with_csrf_and_failed_logins_are_paused() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_without_broker(dir.path());
    let refused = host_tool(&site, &["console", "--listen", "127.0.0.1:0"], None);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--set-password"));
    assert!(!host_tool(&site, &["console", "--set-password"], Some("short\n")).status.success(), "too short");
    ok(host_tool(&site, &["console", "--set-password"], Some(&format!("{PASSWORD}\n"))));
    let file = std::fs::read_to_string(&site).unwrap();
    assert!(file.contains("console_password = \"$argon2id$") && !file.contains(PASSWORD), "stored hashed only");
    let open = host_tool(&site, &["console", "--listen", "0.0.0.0:0"], None);
    assert!(
        !open.status.success() && String::from_utf8_lossy(&open.stderr).contains("--tls-cert"),
        "not served to the network in clear"
    );

    let console = Console::start(&site);
    let addr = console.addr.as_str();
    for path in ["/doors", "/people", "/access", "/events", "/events/stream", "/"] {
        let r = http(addr, "GET", path, "", None);
        assert_eq!((r.status, r.header("location")), (303, Some(if path == "/" { "/doors" } else { "/login" })), "{path}");
    }
    let form = http(addr, "GET", "/login", "", None);
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"password\"") && form.csrf().len() == 64);
    assert!(form.header("content-security-policy").is_some_and(|p| p.contains("frame-ancestors 'none'")));
    // The right password without the form's token, or with another token: refused, no session.
    let right = format!("password={}", form_value(PASSWORD));
    let bare = http(addr, "POST", "/login", "", Some(&right));
    assert_eq!((bare.status, bare.cookie("facegate_session")), (403, None));
    let token = form.cookie("facegate_login_csrf").unwrap();
    let forged =
        http(addr, "POST", "/login", &format!("facegate_login_csrf={token}"), Some(&format!("{right}&csrf={}", "0".repeat(64))));
    assert_eq!((forged.status, forged.cookie("facegate_session")), (403, None));
    let (wrong, session) = login(addr, "not the password");
    assert_eq!((wrong.status, session), (401, None));

    let (reply, session) = login(addr, PASSWORD);
    let session = session.unwrap_or_else(|| panic!("no session: {} {}", reply.status, reply.body));
    assert_eq!((reply.status, reply.header("location")), (303, Some("/doors")));
    let set = reply.headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("facegate_session=")).unwrap();
    assert!(set.1.contains("HttpOnly") && set.1.contains("SameSite=Strict") && set.1.contains("Max-Age="), "{set:?}");
    let cookie = format!("facegate_session={session}");
    for (path, expect) in [
        ("/doors", "The broker is not reachable"),
        ("/people", "0 of 0 people"),
        ("/access", "Time zone"),
        ("/events", "/assets/events.js"),
    ] {
        let r = http(addr, "GET", path, &cookie, None);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").is_some_and(|t| t.starts_with("text/html")) && r.body.contains(expect),
            "{path}: {}",
            r.body
        );
    }
    // A change made on the command line shows at the next page (saved, then
    // not published: there is no broker; `sync` would publish it).
    let added = host_tool(&site, &["group", "add", "night-shift"], None);
    assert!(String::from_utf8_lossy(&added.stderr).contains("cannot reach the broker"));
    assert!(http(addr, "GET", "/access", &cookie, None).body.contains("night-shift"));
    // A change from a form: refused without the session's token, made with it
    // (saved; the page says it is not published, there being no broker).
    let forged = http(addr, "POST", "/access/group-add", &cookie, Some("name=visitors&csrf=00"));
    assert_eq!(forged.status, 403);
    assert!(!http(addr, "GET", "/access", &cookie, None).body.contains("visitors"), "a forged form changed the site");
    let csrf = http(addr, "GET", "/access", &cookie, None).csrf();
    let added = http(addr, "POST", "/access/group-add", &cookie, Some(&format!("name=visitors&schedule=&csrf={csrf}")));
    assert_eq!((added.status, added.header("location")), (303, Some("/access")));
    let access = http(addr, "GET", "/access", &cookie, None).body;
    assert!(access.contains("<td>visitors</td>") && access.contains("not published to the doors yet"), "{access}");
    // A door added from the Doors page: its secrets come back as a download (and are kept nowhere else).
    let csrf_doors = http(addr, "GET", "/doors", &cookie, None).csrf();
    let add = "name=back&group=visitors&schedule=&username=door-back&password=pw-back";
    assert_eq!(http(addr, "POST", "/doors/add", &cookie, Some(&format!("{add}&csrf=0"))).status, 403);
    assert!(!http(addr, "GET", "/doors", &cookie, None).body.contains("<td>back</td>"), "a forged form added a door");
    let secrets = http(addr, "POST", "/doors/add", &cookie, Some(&format!("{add}&csrf={csrf_doors}")));
    assert_eq!(secrets.status, 200, "{}", secrets.body);
    assert!(secrets.header("content-disposition").is_some_and(|d| d.contains("attachment; filename=\"back.fleet.toml\"")));
    assert!(secrets.body.contains("door = \"back\"") && secrets.body.contains("site_public_key"), "{}", secrets.body);
    let leftovers = std::fs::read_dir(std::env::temp_dir()).unwrap().flatten();
    assert!(
        !leftovers.into_iter().any(|e| e.file_name().to_string_lossy().starts_with("facegate-console-door-")),
        "secrets left behind"
    );
    assert!(http(addr, "GET", "/doors", &cookie, None).body.contains("<td>back</td>"));
    // Its groups changed in place on the Access page (its login and secrets stay).
    let set = format!("name=back&group=visitors&group=night-shift&schedule=&csrf={csrf_doors}");
    assert_eq!(http(addr, "POST", "/doors/set", &cookie, Some(&set)).status, 303);
    let access = http(addr, "GET", "/access", &cookie, None).body;
    assert!(access.contains("value=\"night-shift\" checked"), "the door's form shows its new group: {access}");
    assert!(http(addr, "GET", "/events", &cookie, None)
        .body
        .contains("door set back (groups visitors, night-shift; schedule always)"));
    let removed = http(addr, "POST", "/doors/remove", &cookie, Some(&format!("name=back&csrf={csrf_doors}")));
    assert_eq!(removed.status, 303);
    assert!(!http(addr, "GET", "/doors", &cookie, None).body.contains("<td>back</td>"));
    // The audit log: the console's change and the command line's, each with who made it.
    let events = http(addr, "GET", "/events", &cookie, None).body;
    assert!(events.contains("<td>console from 127.0.0.1</td><td>group add visitors (schedule always)</td>"), "{events}");
    assert!(events.contains("<td>group add night-shift (schedule always)</td>") && events.contains("command line (user "));
    let bad = http(addr, "POST", "/access/schedule-set", &cookie, Some(&format!("name=x&windows=someday&csrf={csrf}")));
    assert_eq!(bad.status, 303);
    let access = http(addr, "GET", "/access", &cookie, None).body;
    assert!(access.contains("Not done") && !access.contains("<td>x</td>"), "a bad schedule is refused: {access}");
    // Enrolment from uploads: a forged form, an oversized photo and a photo
    // without a face change nothing; each says why.
    let upload = |csrf: &str, photo: &[u8]| {
        let (content_type, body) =
            multipart(&[("csrf", None, csrf.as_bytes()), ("name", None, b"Ada"), ("photo", Some("a.jpg"), photo)]);
        send(TcpStream::connect(addr).unwrap(), addr, "POST", "/people/enrol", &cookie, Some((&content_type, &body)))
    };
    let csrf = http(addr, "GET", "/people", &cookie, None).csrf();
    assert_eq!(upload("0", b"not a photo").status, 403);
    assert_eq!(upload(&csrf, &vec![0xff; 11 << 20]).status, 413, "an 11 MB photo");
    assert_eq!(upload(&csrf, b"\xff\xd8\xff\xe0 not a whole jpeg").status, 303);
    let people = http(addr, "GET", "/people", &cookie, None).body;
    assert!(people.contains("Not done: no usable photo of Ada (1-a.jpg:") && people.contains("0 of 0 people"), "{people}");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(format!("GET /events/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").as_bytes()).unwrap();
    let mut head = [0u8; 256];
    let n = stream.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: text/event-stream"), "{head}");
    // Logging out needs the session's token; afterwards the session is gone.
    let page = http(addr, "GET", "/doors", &cookie, None);
    assert_eq!(http(addr, "POST", "/logout", &cookie, Some("csrf=")).status, 403);
    assert_eq!(http(addr, "GET", "/doors", &cookie, None).status, 200, "a refused logout ends nothing");
    assert_eq!(http(addr, "POST", "/logout", &cookie, Some(&format!("csrf={}", page.csrf()))).status, 303);
    assert_eq!(http(addr, "GET", "/doors", &cookie, None).status, 303);

    // Five failures in a minute (one above): logins from here pause, even with the right password.
    for _ in 0..4 {
        assert_eq!(login(addr, "guess").0.status, 401);
    }
    let (paused, session) = login(addr, PASSWORD);
    assert_eq!((paused.status, session), (429, None));
    drop(console);
    // A restarted console takes the password it was given (a new session) and has lost no change.
    let console = Console::start(&site);
    let (reply, session) = login(&console.addr, PASSWORD);
    assert!(reply.status == 303 && session.is_some());
    let cookie = format!("facegate_session={}", session.unwrap());
    let access = http(&console.addr, "GET", "/access", &cookie, None).body;
    assert!(access.contains("<td>visitors</td>") && access.contains("<td>night-shift</td>"), "{access}");
    assert!(http(&console.addr, "GET", "/events", &cookie, None).body.contains("door remove back"), "the audit log kept");
}

/// A site on a real broker with its front door paired (its directory) and
/// Colin Powell enrolled in its staff from three photos; his approach
/// (photos 10–14) ready for the door's replay. The console password is set.
struct Fixture {
    dir: tempfile::TempDir,
    broker: facegate_testkit::broker::Broker,
    site: std::path::PathBuf,
    approach: std::path::PathBuf,
    /// Colin's three enrolment photos.
    photos: Vec<String>,
}

impl Fixture {
    /// With Colin enrolled from the command line.
    fn new(what: &str) -> Option<Fixture> {
        let fixture = Self::without_colin(what)?;
        let enrol: Vec<&str> = ["enroll", "Colin_Powell"]
            .into_iter()
            .chain(fixture.photos.iter().map(String::as_str))
            .chain(["--group", "staff"])
            .collect();
        ok(host_tool(&fixture.site, &enrol, None));
        Some(fixture)
    }

    fn without_colin(what: &str) -> Option<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = facegate_testkit::lfw(what)?;
        let users = [("admin", "pw-admin"), ("door-front", "pw-front"), ("door-back", "pw-back")];
        let broker = facegate_testkit::broker::start(&dir.path().join("broker"), &users, what)?;
        let site = dir.path().join("hq.toml");
        let (ca, url) = (broker.ca.display().to_string(), broker.url());
        let init =
            ["site", "init", "--name", "hq", "--broker", &url, "--ca", &ca, "--username", "admin", "--password", "pw-admin"];
        ok(host_tool(&site, &init, None));
        ok(host_tool(&site, &["group", "add", "staff"], None));
        add_door(&site, dir.path(), "front", "staff");
        let (approach, mut photos) = (dir.path().join("approach"), Vec::new());
        std::fs::create_dir_all(&approach).unwrap();
        for i in 1..=3 {
            let p = dir.path().join(format!("enrol{i}.jpg"));
            std::fs::write(&p, data.read(&facegate_lfw::image_path("Colin_Powell", i)).unwrap()).unwrap();
            photos.push(p.display().to_string());
        }
        for (k, i) in (10..15).enumerate() {
            let photo = data.read(&facegate_lfw::image_path("Colin_Powell", i)).unwrap();
            std::fs::write(approach.join(format!("{k:03}.jpg")), photo).unwrap();
        }
        ok(host_tool(&site, &["console", "--set-password"], Some(PASSWORD)));
        Some(Fixture { dir, broker, site, approach, photos })
    }

    fn start_front_door(&self) -> facegate_testkit::fleet::RunningDoor {
        self.start_door("front")
    }

    /// A second door, `back`, for the group `visitors` (added here).
    fn add_back_door(&self) {
        ok(host_tool(&self.site, &["group", "add", "visitors"], None));
        add_door(&self.site, self.dir.path(), "back", "visitors");
    }

    fn start_door(&self, name: &str) -> facegate_testkit::fleet::RunningDoor {
        start_door(&self.dir.path().join(name), &self.broker, &self.approach)
    }
}

/// Adds door `name` (broker login `door-NAME`, password `pw-NAME`) for
/// `group`, its secrets in `dir/NAME/fleet.toml`.
fn add_door(site: &Path, dir: &Path, name: &str, group: &str) {
    let door = dir.join(name);
    std::fs::create_dir_all(&door).unwrap();
    let (secrets, login, password) =
        (door.join("fleet.toml").display().to_string(), format!("door-{name}"), format!("pw-{name}"));
    let add = ["door", "add", name, "--group", group, "--username", &login, "--password", &password, "--secrets-out", &secrets];
    ok(host_tool(site, &add, None));
}

#[test]
fn the_console_shows_a_doors_status_and_its_grant_arrives_live() {
    let Some(mut fixture) = Fixture::new("the console test") else { return };
    let console = Console::start(&fixture.site);
    let (_, session) = login(&console.addr, PASSWORD);
    let cookie = format!("facegate_session={}", session.expect("logged in"));
    // Listening before the door starts: its first grant comes over the stream.
    let mut stream = TcpStream::connect(&console.addr).unwrap();
    stream.write_all(format!("GET /events/stream HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n").as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let front = fixture.start_front_door();
    let (mut seen, deadline) = (String::new(), Instant::now() + Duration::from_secs(90));
    while !seen.contains("\"kind\":\"granted\"") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        if let Ok(n) = stream.read(&mut buf) {
            seen += &String::from_utf8_lossy(&buf[..n]);
        }
    }
    assert!(seen.contains("event: access") && seen.contains("\"kind\":\"granted\""), "no grant on the stream: {seen}");
    assert!(seen.contains("Colin_Powell") && seen.contains("\"door\":\"front\""), "{seen}");
    assert!(front.kinds("granted") >= 1);
    // The Doors page: the front door online; the Events page lists the grant.
    facegate_testkit::fleet::wait_until("the door online on the Doors page", 30, || {
        let page = http(&console.addr, "GET", "/doors", &cookie, None).body;
        page.contains("<td>front</td><td class=\"online\">online</td>")
    });
    let events = http(&console.addr, "GET", "/events", &cookie, None).body;
    assert!(events.contains("<td>granted</td><td>Colin_Powell</td>") && events.contains("site-synced"), "{events}");
    // Filtered, and exported: the same events.
    let granted =
        http(&console.addr, "GET", "/events?door=front&person=colin&kind=granted&since=2020-01-01T00:00", &cookie, None);
    assert!(granted.body.contains("<td>granted</td>") && !granted.body.contains("site-synced"), "{}", granted.body);
    assert!(!http(&console.addr, "GET", "/events?door=lab", &cookie, None).body.contains("<td>granted</td>"));
    assert!(granted.body.contains("<div id=\"chart\"><svg"), "the hourly chart");
    let hostile = http(&console.addr, "GET", "/events?door=%3Cscript%3Ealert(1)%3C/script%3E", &cookie, None).body;
    assert!(!hostile.contains("<script>alert"), "query text reached the page unescaped");
    let csv = http(&console.addr, "GET", "/events.csv?kind=granted", &cookie, None);
    assert!(csv.header("content-type").is_some_and(|t| t.starts_with("text/csv")), "{:?}", csv.headers);
    assert!(csv.body.starts_with("time,door,kind,person,seq,distance,frames,live\r\n"), "{}", csv.body);
    assert!(csv.body.contains(",front,granted,Colin_Powell,") && !csv.body.contains("site-synced"), "{}", csv.body);
    assert_eq!(http(&console.addr, "GET", "/events.csv", "", None).status, 303, "no export without a login");
    // The broker stopped, then started again: the console says so, follows it
    // again, and what the door sends afterwards reaches the Events page.
    fixture.broker.stop();
    let doors_page = || http(&console.addr, "GET", "/doors", &cookie, None).body;
    facegate_testkit::fleet::wait_until("the console noticing the broker gone", 30, || doors_page().contains("not reachable"));
    fixture.broker.restart();
    facegate_testkit::fleet::wait_until("the console back on the broker", 60, || {
        doors_page().contains("<td>front</td><td class=\"online\">online</td>")
    });
    // Who may open the front door: Colin, until his group is taken away.
    let check = |addr: &str| http(addr, "GET", "/access?door=front&at=2026-12-07T10:00", &cookie, None).body;
    assert!(check(&console.addr).contains("<td>Colin_Powell</td><td>passes</td>"), "{}", check(&console.addr));
    assert_eq!(front.kinds("unknown"), 0, "Colin is known here");
    let csrf = http(&console.addr, "GET", "/people", &cookie, None).csrf();
    let form = format!("name=Colin_Powell&group=staff&csrf={csrf}");
    assert_eq!(http(&console.addr, "POST", "/people/revoke", &cookie, Some(&form)).status, 303);
    let people = http(&console.addr, "GET", "/people", &cookie, None).body;
    assert!(people.contains("Done: saved and published"), "{people}");
    assert!(check(&console.addr).contains("<td>Colin_Powell</td><td>denied-group</td>"));
    // The door is no longer sent his record (a door learns nothing of whom it does not admit): a stranger there,
    // and the Events page shows it.
    front.wait_for("unknown", None, 60);
    facegate_testkit::fleet::wait_until("the stranger on the Events page", 30, || {
        http(&console.addr, "GET", "/events?kind=unknown", &cookie, None).body.contains("<td>unknown</td>")
    });
    // Given his group back while the door is off: the door has the change when it is back.
    let _ = front.stop();
    let form = format!("name=Colin_Powell&group=staff&csrf={csrf}");
    assert_eq!(http(&console.addr, "POST", "/people/grant", &cookie, Some(&form)).status, 303);
    assert!(http(&console.addr, "GET", "/people", &cookie, None).body.contains("Done: saved and published"));
    let front = fixture.start_front_door();
    front.wait_for("granted", Some("Colin_Powell"), 90);
    drop(front);
    // A validity window on the People page: outside it, "who may open" says he has expired.
    let form = format!("name=Colin_Powell&from=2026-12-01T00%3A00&until=2026-12-02T00%3A00&csrf={csrf}");
    assert_eq!(http(&console.addr, "POST", "/people/valid", &cookie, Some(&form)).status, 303);
    let expired = http(&console.addr, "GET", "/access?door=front&at=2026-12-07T10:00", &cookie, None).body;
    assert!(expired.contains("<td>Colin_Powell</td><td>denied-expired</td>"), "{expired}");
    let bad = format!("name=Colin_Powell&from=2026-12-02T00%3A00&until=2026-12-01T00%3A00&csrf={csrf}");
    assert_eq!(http(&console.addr, "POST", "/people/valid", &cookie, Some(&bad)).status, 303);
    assert!(http(&console.addr, "GET", "/people", &cookie, None).body.contains("Not done: --from must come before --until"));
    // Renamed on the People page: the site knows him by the new name.
    let form = format!("name=Colin_Powell&to=Colin+L.+Powell&csrf={csrf}");
    assert_eq!(http(&console.addr, "POST", "/people/rename", &cookie, Some(&form)).status, 303);
    let people = http(&console.addr, "GET", "/people", &cookie, None).body;
    assert!(people.contains("Colin L. Powell") && !people.contains("<td>Colin_Powell"), "{people}");
    assert!(http(&console.addr, "GET", "/events", &cookie, None).body.contains("rename Colin_Powell Colin L. Powell"));
    // Which doors know whom, from the command line: the console shows the setting and its change.
    let know = |args: &[&str]| String::from_utf8(ok(host_tool(&fixture.site, args, None)).stdout).unwrap();
    assert_eq!(know(&["site", "doors-know"]).trim(), "admitted");
    know(&["site", "doors-know", "everyone"]);
    let json: serde_json::Value = know(&["--json", "site", "doors-know"]).parse().unwrap();
    assert_eq!(json["doors_know"], "everyone");
    let access = http(&console.addr, "GET", "/access", &cookie, None).body;
    assert!(access.contains(r#"<option value="everyone" selected>"#), "{access}");
    assert!(http(&console.addr, "GET", "/events", &cookie, None).body.contains("site doors-know everyone"));
    assert!(!host_tool(&fixture.site, &["site", "doors-know", "nobody"], None).status.success());
}

use facegate_testkit::browser::fantoccini;

/// A weekly window a minute long, twelve hours from now (UTC, the test
/// site's zone): closed whenever the test runs.
fn closed_window() -> String {
    const DAYS: [&str; 7] = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"];
    let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60 + 12 * 60;
    let (day, minute) = ((later / (24 * 60)) % 7, later % (24 * 60));
    let minute = minute.min(24 * 60 - 2);
    format!("{} {:02}:{:02}-{:02}:{:02}", DAYS[day as usize], minute / 60, minute % 60, (minute + 1) / 60, (minute + 1) % 60)
}

/// Waits (up to a minute) until the page shows `text`: a navigation ends
/// after the click that starts it, a door's event comes when it comes.
async fn page_says(browser: &fantoccini::Client, text: &str) {
    let body = text_until(browser, "body", 60, |body| body.contains(text)).await;
    assert!(body.contains(text), "no {text:?} on {:?}: {body}", browser.current_url().await);
}

/// The text of the element at `css` once `done` holds of it, or after `secs`.
async fn text_until(browser: &fantoccini::Client, css: &str, secs: u64, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = text_of(browser, css).await;
        if done(&text) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 90 s) until a row of the Events page's table holds every
/// one of `cells` (door, kind, person…).
async fn events_row(browser: &fantoccini::Client, cells: &[&str]) {
    let has = |rows: &str| rows.lines().any(|r| r.split_whitespace().filter(|c| cells.contains(c)).count() == cells.len());
    let rows = text_until(browser, "#events tbody", 90, has).await;
    assert!(has(&rows), "no row with {cells:?} in the events: {rows}");
}

/// Clicks the navigation's `link` and waits for its page.
async fn follow_link(browser: &fantoccini::Client, link: &str) {
    browser.find(fantoccini::Locator::LinkText(link)).await.unwrap().click().await.unwrap();
    at_path(browser, &format!("/{}", link.to_lowercase())).await;
}

/// Waits (up to 15 s) until the browser is at `path`.
async fn at_path(browser: &fantoccini::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while browser.current_url().await.unwrap().path() != path && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.current_url().await.unwrap().path(), path);
}

async fn screenshot(browser: &fantoccini::Client, dir: &Path, name: &str) {
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await.unwrap()).unwrap();
}

/// The text of the element at `css`, read again while the page is still
/// being replaced (a click's navigation ends after the click returns).
async fn text_of(browser: &fantoccini::Client, css: &str) -> String {
    for _ in 0..40 {
        if let Ok(element) = browser.find(fantoccini::Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {css} on {:?}", browser.current_url().await)
}

async fn log_in_with(browser: &fantoccini::Client, password: &str) {
    use fantoccini::Locator;
    browser.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    browser.find(Locator::Css("form[action='/login'] button")).await.unwrap().click().await.unwrap();
}

#[test]
fn in_a_real_browser_the_console_logs_in_and_a_grant_appears_without_a_reload() {
    let Some(fixture) = Fixture::without_colin("the console's browser test") else { return };
    fixture.add_back_door();
    let Some(driver) = facegate_testkit::browser::chromedriver("the console's browser test") else { return };
    let console = Console::start(&fixture.site);
    let base = format!("http://{}", console.addr);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let door = runtime.block_on(async {
        use fantoccini::Locator;
        let browser = facegate_testkit::browser::session(&driver).await;
        let shot = |name: &'static str| screenshot(&browser, &shots, name);
        // Not logged in: the Doors page sends the browser to the login form.
        browser.goto(&format!("{base}/doors")).await.unwrap();
        at_path(&browser, "/login").await;
        shot("login").await;
        let log_in = |password: &'static str| log_in_with(&browser, password);
        log_in("not the password").await;
        page_says(&browser, "Wrong password").await;
        at_path(&browser, "/login").await;
        log_in(PASSWORD).await;
        at_path(&browser, "/doors").await;
        page_says(&browser, "front").await;
        shot("doors").await;
        let go = |link: &'static str| follow_link(&browser, link);
        // Colin enrolled by uploading three photos: each photo's verdict shown.
        go("People").await;
        let enrol = browser.find(Locator::Css("form#enrol")).await.unwrap();
        enrol.find(Locator::Css("input[name=name]")).await.unwrap().send_keys("Colin_Powell").await.unwrap();
        enrol.find(Locator::Css("input[name=group][value=staff]")).await.unwrap().click().await.unwrap();
        enrol.find(Locator::Css("input[name=photo]")).await.unwrap().send_keys(&fixture.photos.join("\n")).await.unwrap();
        enrol.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
        page_says(&browser, "Enrolled Colin_Powell with 3 templates (enrol1.jpg: used; enrol2.jpg: used; enrol3.jpg: used)")
            .await;
        shot("people").await;
        go("Access").await;
        page_says(&browser, "staff").await;
        shot("access").await;
        // The Events page open, then both doors start: the front door's grant appears without
        // a reload; the back door (visitors only) is not sent Colin's record: a stranger there.
        go("Events").await;
        let door = fixture.start_front_door();
        let _back = fixture.start_door("back");
        events_row(&browser, &["front", "granted", "Colin_Powell"]).await;
        events_row(&browser, &["back", "unknown"]).await;
        assert_eq!(browser.current_url().await.unwrap().path(), "/events", "no navigation happened");
        shot("events").await;
        // Every door to know everyone (set on the Access page), then his group taken on the
        // People page: the door still knows him and refuses him by name, and the Events page shows it.
        go("Access").await;
        let know = browser.find(Locator::Css("form#doors-know")).await.unwrap();
        know.find(Locator::Css("option[value=everyone]")).await.unwrap().click().await.unwrap();
        know.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
        page_says(&browser, "Done: saved and published").await;
        go("People").await;
        browser.find(Locator::Css("form[action='/people/revoke'] button")).await.unwrap().click().await.unwrap();
        page_says(&browser, "Done: saved and published").await;
        go("Events").await;
        events_row(&browser, &["front", "denied-group", "Colin_Powell"]).await;
        // The back door knows him now too, and refuses him by name.
        events_row(&browser, &["back", "denied-group", "Colin_Powell"]).await;
        // Given back, but staff now pass only in a schedule that is never open now: the door says so.
        go("People").await;
        browser.find(Locator::Css("form[action='/people/grant'] button")).await.unwrap().click().await.unwrap();
        page_says(&browser, "Done: saved and published").await;
        go("Access").await;
        let schedule = browser.find(Locator::Css("form[action='/access/schedule-set']")).await.unwrap();
        schedule.find(Locator::Css("input[name=name]")).await.unwrap().send_keys("closed").await.unwrap();
        schedule.find(Locator::Css("input[name=windows]")).await.unwrap().send_keys(&closed_window()).await.unwrap();
        schedule.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
        page_says(&browser, "Done: saved and published").await;
        let group = browser.find(Locator::Css("form[action='/access/group-add']")).await.unwrap();
        group.find(Locator::Css("input[name=name]")).await.unwrap().send_keys("staff").await.unwrap();
        group.find(Locator::Css("select[name=schedule] option[value=closed]")).await.unwrap().click().await.unwrap();
        group.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
        page_says(&browser, "Done: saved and published").await;
        shot("access-edited").await;
        go("Events").await;
        events_row(&browser, &["front", "denied-schedule", "Colin_Powell"]).await;
        browser.find(Locator::Css("nav form button")).await.unwrap().click().await.unwrap();
        at_path(&browser, "/login").await;
        browser.close().await.unwrap();
        door
    });
    assert!(door.kinds("granted") >= 1);
    eprintln!("screenshots in {}", shots.display());
}

#[test]
fn beyond_loopback_the_console_serves_https_only_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_without_broker(dir.path());
    ok(host_tool(&site, &["console", "--set-password"], Some(PASSWORD)));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("console.pem"), dir.path().join("console.key"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let (c, k) = (cert_pem.display().to_string(), key_pem.display().to_string());
    let console = Console::start_with(&site, &["console", "--listen", "0.0.0.0:0", "--tls-cert", &c, "--tls-key", &k], &[]);
    let addr = format!("127.0.0.1:{}", console.addr.rsplit(':').next().unwrap());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let https = |method: &str, path: &str, cookies: &str, form: Option<&str>| {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = rustls::ClientConnection::new(config.clone(), name).unwrap();
        exchange(rustls::StreamOwned::new(tls, TcpStream::connect(&addr).unwrap()), &addr, method, path, cookies, form)
    };
    let form = https("GET", "/login", "", None);
    assert_eq!(form.status, 200);
    let token = form.cookie("facegate_login_csrf").unwrap();
    let body = format!("password={}&csrf={}", form_value(PASSWORD), form.csrf());
    let reply = https("POST", "/login", &format!("facegate_login_csrf={token}"), Some(&body));
    let set = reply.headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("facegate_session=")).expect("a session");
    assert!(set.1.contains("; Secure") && set.1.contains("HttpOnly"), "{set:?}");
    let session = reply.cookie("facegate_session").unwrap();
    assert_eq!(https("GET", "/doors", &format!("facegate_session={session}"), None).status, 200);
    // Plain HTTP to it gets no page.
    assert_eq!(http(&addr, "GET", "/login", "", None).status, 0, "a page served in clear");
}

#[test]
fn bench_console_has_the_interface_and_times_every_page() {
    let probe = tempfile::tempdir().unwrap();
    if facegate_testkit::broker::start(probe.path(), &[("probe", "probe")], "the console benchmark test").is_none() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .arg("--models")
        .arg(facegate_testkit::models())
        .args(["--json", "bench-console", "--people", "50", "--doors", "2", "--runs", "2"])
        .output()
        .unwrap();
    let figures: serde_json::Value = serde_json::from_slice(&ok(out).stdout).expect("one JSON object");
    assert_eq!((figures["people"].as_u64(), figures["doors"].as_u64()), (Some(50), Some(2)));
    for page in ["/doors", "/people", "/access", "/events", "/events.csv"] {
        let ms = figures["pages"][page]["median_ms"].as_f64().unwrap_or_else(|| panic!("{page}: {figures}"));
        assert!(ms > 0.0 && ms <= figures["pages"][page]["max_ms"].as_f64().unwrap(), "{figures}");
    }
    assert!(figures["event_to_page_ms"]["median"].as_f64().is_some_and(|ms| ms > 0.0), "{figures}");
    assert!(figures["events_held"].as_u64().is_some_and(|n| n >= 2000), "the day's events reached the console: {figures}");
}

/// The screenshot in `docs/`: a site of synthetic names (no dataset, no
/// faces) with three doors and a day of events, its Events page in the
/// browser. Saved with the others; also to `$FACEGATE_DOCS_SCREENSHOT` when set.
#[test]
fn the_events_page_of_a_synthetic_site_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let doors = ["front", "lab", "loading-bay"];
    let mut users = vec![("admin".to_string(), "pw-admin".to_string())];
    users.extend(doors.iter().map(|d| (format!("door-{d}"), format!("pw-{d}"))));
    let logins: Vec<(&str, &str)> = users.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect();
    let Some(broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &logins, "the docs screenshot") else {
        return;
    };
    let Some(driver) = facegate_testkit::browser::chromedriver("the docs screenshot") else { return };
    let site = dir.path().join("hq.toml");
    let (ca, url) = (broker.ca.display().to_string(), broker.url());
    let init = ["site", "init", "--name", "hq", "--broker", &url, "--ca", &ca, "--username", "admin", "--password", "pw-admin"];
    ok(host_tool(&site, &init, None));
    ok(host_tool(&site, &["group", "add", "staff"], None));
    for d in doors {
        let secrets = dir.path().join(format!("{d}.toml")).display().to_string();
        let (user, password) = (format!("door-{d}"), format!("pw-{d}"));
        let add = ["door", "add", d, "--group", "staff", "--username", &user, "--password", &password, "--secrets-out", &secrets];
        ok(host_tool(&site, &add, None));
    }
    ok(host_tool(&site, &["console", "--set-password"], Some(PASSWORD)));
    let console = Console::start(&site);
    let (_, session) = login(&console.addr, PASSWORD);
    let cookie = format!("facegate_session={}", session.unwrap());
    // The doors say they are online; then a day of made-up traffic, as their logins would send it.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let names = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson"];
    for (k, d) in doors.iter().enumerate() {
        let status = serde_json::json!({"door": d, "online": true, "version": 4, "people": 6, "templates": 18,
            "model": "", "free_bytes": 9_000_000_000u64 + k as u64, "events_delivered": 40, "events_last": 40,
            "time": facegate_store::access_log::iso_time(now_ms)});
        broker.publish_retained(
            &format!("door-{d}"),
            &format!("pw-{d}"),
            &[(format!("facegate/hq/doors/{d}/status"), status.to_string().into_bytes())],
        );
    }
    facegate_testkit::fleet::wait_until("the doors online on the console", 30, || {
        http(&console.addr, "GET", "/doors", &cookie, None).body.matches("class=\"online\"").count() == doors.len()
    });
    for (k, d) in doors.iter().enumerate() {
        let events: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| {
                let kind = match (i * 7 + k) % 11 { 0 => "spoof", 1 | 2 => "denied-schedule", 3 => "unknown", _ => "granted" };
                let person = if kind == "unknown" || kind == "spoof" { serde_json::Value::Null } else { names[(i + k) % names.len()].into() };
                let at = now_ms - ((40 - i) as i64) * 35 * 60_000 / 2 - k as i64 * 60_000;
                let e = serde_json::json!({"kind": kind, "person": person, "seq": i + 1, "time": facegate_store::access_log::iso_time(at)});
                (format!("facegate/hq/doors/{d}/events"), e.to_string().into_bytes())
            })
            .collect();
        broker.publish(&format!("door-{d}"), &format!("pw-{d}"), &events, false);
    }
    facegate_testkit::fleet::wait_until("a day of events on the console", 30, || {
        http(&console.addr, "GET", "/events.csv", &cookie, None).body.lines().count() > 120
    });
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let browser = facegate_testkit::browser::session(&driver).await;
        browser.goto(&format!("http://{}/login", console.addr)).await.unwrap();
        log_in_with(&browser, PASSWORD).await;
        at_path(&browser, "/doors").await;
        follow_link(&browser, "Events").await;
        page_says(&browser, "Grace Hopper").await;
        let rects = browser
            .find(fantoccini::Locator::Css("#chart svg"))
            .await
            .unwrap()
            .html(false)
            .await
            .unwrap()
            .matches("<rect")
            .count();
        assert!(rects > 20, "the chart draws the day's events: {rects} rectangles");
        screenshot(&browser, &shots, "docs-events").await;
        browser.close().await.unwrap();
    });
    if let Some(out) = std::env::var_os("FACEGATE_DOCS_SCREENSHOT") {
        std::fs::copy(shots.join("docs-events.png"), out).unwrap();
    }
}

/// A console started with `--port` hands a new door its secrets over the
/// serial link (the door in setup mode, paired with this host), as `door
/// add --port` does: no file to download.
#[test]
fn a_console_with_a_serial_port_pairs_the_door_it_adds() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("admin", "pw-admin"), ("door-front", "pw-front")];
    let Some(broker) = facegate_testkit::broker::start(&dir.path().join("broker"), &users, "the console's serial test") else {
        return;
    };
    let site = dir.path().join("hq.toml");
    let (ca, url) = (broker.ca.display().to_string(), broker.url());
    let init = ["site", "init", "--name", "hq", "--broker", &url, "--ca", &ca, "--username", "admin", "--password", "pw-admin"];
    ok(host_tool(&site, &init, None));
    ok(host_tool(&site, &["group", "add", "staff"], None));
    ok(host_tool(&site, &["console", "--set-password"], Some(PASSWORD)));
    // The door: a config with a serial link, an empty corridor to look at, setup mode.
    let d = dir.path().join("front");
    let corridor = dir.path().join("corridor");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::create_dir_all(&corridor).unwrap();
    image::RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90])).save(corridor.join("empty.png")).unwrap();
    let config = d.join("facegate.toml");
    let p = d.display();
    let settings = format!(
        "[camera]\nfps = 5\n[liveness]\nmode = \"off\"\n[serial]\nport = \"pty\"\n[paths]\nmodels = \"{}\"\n\
         gallery = \"{p}/gallery.fg\"\nlog = \"{p}/access.log\"\npairing = \"{p}/pairing.fg\"\n\
         fleet_secrets = \"{p}/fleet.toml\"\nsite = \"{p}/site.fgsite\"\n",
        facegate_testkit::models().display()
    );
    std::fs::write(&config, settings).unwrap();
    let device = facegate_testkit::binary("device");
    let door = facegate_testkit::fleet::RunningDoor::start_with_config(&device, &config, &corridor, &["--setup"]);
    let mut tty = None;
    facegate_testkit::fleet::wait_until("the door's serial path", 60, || {
        tty = door.stderr().lines().find_map(|l| l.split("serial: ").nth(1).map(|p| p.trim().to_string()));
        tty.is_some()
    });
    let tty = tty.unwrap();
    let home = dir.path().join("home");
    let paired =
        Command::new(env!("CARGO_BIN_EXE_host-tool")).args(["--port", &tty, "pair"]).env("FACEGATE_HOME", &home).output();
    ok(paired.unwrap());
    // The console on that link.
    let console =
        Console::start_with(&site, &["--port", &tty, "console", "--listen", "127.0.0.1:0"], &[("FACEGATE_HOME", &home)]);
    let (_, session) = login(&console.addr, PASSWORD);
    let cookie = format!("facegate_session={}", session.unwrap());
    let csrf = http(&console.addr, "GET", "/doors", &cookie, None).csrf();
    let add = format!("name=front&group=staff&schedule=&username=door-front&password=pw-front&csrf={csrf}");
    let added = http(&console.addr, "POST", "/doors/add", &cookie, Some(&add));
    assert_eq!((added.status, added.header("location")), (303, Some("/doors")), "no file: {}", added.body);
    let doors = http(&console.addr, "GET", "/doors", &cookie, None).body;
    assert!(doors.contains("Done: saved and published") && doors.contains("<td>front</td>"), "{doors}");
    let settings = std::fs::read_to_string(&config).unwrap();
    assert!(settings.contains("enabled = true") && settings.contains(&broker.url()), "the door's link is on: {settings}");
    assert!(std::fs::read_to_string(d.join("fleet.toml")).unwrap().contains("door-front"), "its secrets went over the cable");
    door.stop();
}
