//! `host-tool bench-console`: the console of a site of `--people` people
//! and `--doors` doors (synthetic templates, made here) on a real broker
//! (mosquitto, started here): each page's time (median and slowest of
//! `--runs`), and how long a door's event takes from the broker to the
//! Events page's live stream.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The console's password in the bench's own site.
const PASSWORD: &str = "bench console password";

/// `bench-console`.
pub fn run(g: &crate::cmd::Global, people: usize, doors: usize, runs: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("facegate-bench-console-{}", super::auth::token()?));
    std::fs::create_dir_all(&dir)?;
    let result = measure(g, &dir, people, doors, runs.max(1));
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    if g.json {
        crate::output::print_json(&figures);
    } else {
        println!("console of {people} people and {doors} doors ({runs} runs per page):");
        for (page, t) in figures["pages"].as_object().into_iter().flatten() {
            let ms = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
            println!("  {page:<24} median {:>7.2} ms   slowest {:>7.2} ms", ms("median_ms"), ms("max_ms"));
        }
        let ms = |k: &str| figures["event_to_page_ms"][k].as_f64().unwrap_or(f64::NAN);
        println!("  a door's event, broker to the Events page: median {:.2} ms, slowest {:.2} ms", ms("median"), ms("max"));
        println!("  ({} events held by the console)", figures["events_held"]);
    }
    Ok(())
}

fn measure(g: &crate::cmd::Global, dir: &std::path::Path, people: usize, doors: usize, runs: usize) -> Result<Value> {
    let names: Vec<String> = (0..doors).map(|d| format!("door-{d:02}")).collect();
    let mut users = vec![("admin".to_string(), "pw-admin".to_string())];
    users.extend(names.iter().map(|d| (d.clone(), format!("pw-{d}"))));
    let logins: Vec<(&str, &str)> = users.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect();
    let broker = facegate_localbroker::broker::Broker::start(&dir.join("broker"), &logins).map_err(anyhow::Error::msg)?;
    let site = dir.join("bench.toml");
    crate::site::create_bench_site(g, &site, &broker, &names, people)?;
    let mut hashed = crate::site::SiteHome::open(&site)?;
    let config =
        facegate_site_admin::SiteConfig { console_password: super::auth::hash_password(PASSWORD)?, ..hashed.config().clone() };
    hashed.save_config(config)?;
    // Every door's status, and a day of events.
    let mut retained = Vec::new();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for d in &names {
        let status = json!({"door": d, "online": true, "version": 1, "people": people, "templates": people * 3,
            "time": facegate_store::access_log::iso_time(now())});
        retained.push((format!("facegate/bench/doors/{d}/status"), status.to_string().into_bytes()));
    }
    broker.publish_retained("admin", "pw-admin", &retained);
    let events: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|k| {
            let d = &names[k % doors.max(1)];
            let kind = ["granted", "denied-group", "unknown", "spoof"][k % 4];
            let e = json!({"kind": kind, "person": format!("Person {}", k % people.max(1)), "seq": k / doors.max(1) + 1,
                "time": facegate_store::access_log::iso_time(now() - (k as i64) * 40_000)});
            (format!("facegate/bench/doors/{d}/events"), e.to_string().into_bytes())
        })
        .collect();

    let mut console = Command::new(std::env::current_exe()?)
        .arg("--site")
        .arg(&site)
        .args(["console", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the console")?;
    let mut line = String::new();
    BufReader::new(console.stdout.take().context("the console's output")?).read_line(&mut line)?;
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).map(str::to_string);
    let result = addr.context("the console did not say where it serves").and_then(|addr| {
        let session = log_in(&addr)?;
        // Once the Doors page shows the doors online, the console follows the broker: the day's events are sent then.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !page(&addr, &session, "/doors")?.1.contains(&format!("<td>{}</td><td class=\"online\">", names[names.len() - 1])) {
            if Instant::now() > deadline {
                bail!("the console did not read the doors' statuses within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        broker.publish("admin", "pw-admin", &events, false);
        let deadline = Instant::now() + Duration::from_secs(30);
        let held = || page(&addr, &session, "/events.csv").map(|(_, csv)| csv.matches("\r\n").count().saturating_sub(1));
        while held()? < events.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let figures = time_pages(&addr, &session, runs, &broker, &names)?;
        Ok((figures, held()?))
    });
    let _ = console.kill();
    let _ = console.wait();
    let ((pages, latency), held) = result?;
    Ok(json!({"people": people, "doors": doors, "runs": runs, "pages": pages, "events_held": held,
        "event_to_page_ms": {"median": facegate_core::stats::median(latency.clone()), "max": latency.iter().copied().fold(0.0, f64::max)}}))
}

/// One request; the status and the body.
fn get(addr: &str, request: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(request.as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, text))
}

type Figures = (serde_json::Map<String, Value>, Vec<f64>);

/// `GET path` with the session cookie.
fn page(addr: &str, session: &str, path: &str) -> Result<(u16, String)> {
    get(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: facegate_session={session}\r\n\r\n"))
}

/// Logs in as a browser does: the session cookie.
fn log_in(addr: &str) -> Result<String> {
    let (_, form) = get(addr, &format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))?;
    let token = form.split("name=\"csrf\" value=\"").nth(1).map(|t| t[..64].to_string()).context("no login form")?;
    let body = format!("password={}&csrf={token}", PASSWORD.replace(' ', "+"));
    let login = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: facegate_login_csrf={token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (_, reply) = get(addr, &login)?;
    reply.split("facegate_session=").nth(1).map(|s| s[..64].to_string()).context("the login failed")
}

fn time_pages(
    addr: &str,
    session: &str,
    runs: usize,
    broker: &facegate_localbroker::broker::Broker,
    doors: &[String],
) -> Result<Figures> {
    let mut pages = serde_json::Map::new();
    for path in ["/doors", "/people", "/people?q=Person+5", "/access", "/events", "/events?kind=denied", "/events.csv"] {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let (status, _) = page(addr, session, path)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("{path} answered {status}");
            }
        }
        let slowest = times.iter().copied().fold(0.0, f64::max);
        pages.insert(path.to_string(), json!({"median_ms": facegate_core::stats::median(times), "max_ms": slowest}));
    }
    // A door's event: from its publication to its arrival on the live stream.
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(
        format!("GET /events/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: facegate_session={session}\r\n\r\n").as_bytes(),
    )?;
    stream.set_read_timeout(Some(Duration::from_millis(20)))?;
    let door = &doors[0];
    let (client, mut connection) = broker.client("bench-door", door, &format!("pw-{door}"));
    std::thread::spawn(move || for _ in connection.iter() {});
    let mut latency = Vec::with_capacity(runs);
    for k in 0..runs {
        let marker = format!("bench-{k}");
        let event = json!({"kind": "granted", "person": marker, "seq": 1_000_000 + k, "time": "2026-01-01T00:00:00Z"});
        let started = Instant::now();
        client.publish(format!("facegate/bench/doors/{door}/events"), rumqttc::QoS::AtLeastOnce, false, event.to_string())?;
        let mut seen = String::new();
        while !seen.contains(&marker) {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("event {k} did not reach the live stream within 10 s");
            }
            let mut buf = [0u8; 8192];
            if let Ok(n) = stream.read(&mut buf) {
                seen += &String::from_utf8_lossy(&buf[..n]);
            }
        }
        latency.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((pages, latency))
}
