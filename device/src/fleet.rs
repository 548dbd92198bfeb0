//! The site link (`[fleet]`): the door's people and access rules come from
//! its site's retained records on an MQTT broker, its events and status go
//! back there.
//!
//! - Every record is checked against the site's admin key and applied only
//!   as a complete, newer version ([`facegate_site::Replica`]): the rules
//!   copy is saved, then the gallery is saved and swapped, the same atomic
//!   save as serial provisioning. A crash between the two fails secure (a
//!   person the copy does not know is in no group).
//! - The access log is the outbox: events are published at least once, each
//!   with (door, seq). The door subscribes to its own events topic, and an
//!   event counts as delivered once the broker hands it back; the cursor of
//!   delivered events is saved, so events raised offline or before a restart
//!   are sent after reconnecting, never re-numbered.
//! - A collector that missed events (a broker crash loses what it had not
//!   saved) asks for them again on the door's `resend` topic; the door
//!   sends what its log still holds from there, at most once per
//!   [`RESEND_EVERY`] (a request needs broker access, not the admin key:
//!   it can cost traffic, never change anything).
//! - The frame loop never waits for this thread: it reads the gallery and
//!   the rules through locks held only for a pointer swap.

use crate::config::Fleet;
use crate::events::now_ms;
use crate::shared::{Shared, SiteGate};
use anyhow::{bail, Context, Result};
use facegate_site::{DoorCopy, DoorSecrets, Received, Replica, Snapshot, Topics};
use facegate_store::access_log::iso_time;
use facegate_store::{Event, EventKind};
use rumqttc::{Client, Connection, LastWill, MqttOptions, Packet, QoS, RecvTimeoutError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events published but not yet handed back, at most.
const WINDOW: u64 = 500;
/// How often the status is refreshed without a change (free space, counters).
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// Resend requests honoured at most this often.
const RESEND_EVERY: Duration = Duration::from_secs(2);

/// Where the link keeps its files.
pub struct FleetPaths {
    /// The site secrets (from pairing).
    pub secrets: PathBuf,
    /// The door's copy of the rules.
    pub site: PathBuf,
}

impl FleetPaths {
    /// The saved delivery cursor, beside the rules copy.
    fn cursor(&self) -> PathBuf {
        facegate_store::atomic::sibling(&self.site, ".sent")
    }
}

/// Reads the secrets and the saved copy, puts the copy's rules in force and
/// starts the link's thread. Missing or bad secrets stop the device: a site
/// door that cannot reach its site must say so at start, not run blind.
pub fn start(
    config: &Fleet,
    paths: FleetPaths,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let text = std::fs::read_to_string(&paths.secrets).with_context(|| {
        format!(
            "fleet.enabled = true but the site secrets {} cannot be read (pair the door with its site: `host-tool --site SITE.toml door add`)",
            paths.secrets.display()
        )
    })?;
    let secrets = DoorSecrets::from_toml(&text).with_context(|| format!("reading {}", paths.secrets.display()))?;
    let copy = match std::fs::read(&paths.site) {
        Ok(bytes) => match DoorCopy::from_bytes(&bytes) {
            Ok(c) if c.door == secrets.door => Some(c),
            Ok(c) => {
                tracing::warn!(
                    "{} is the copy of door {:?}, not {:?}: waiting for the site",
                    paths.site.display(),
                    c.door,
                    secrets.door
                );
                None
            }
            Err(e) => {
                tracing::error!("{}: {e}; nobody passes until the site is read again", paths.site.display());
                None
            }
        },
        Err(_) => None,
    };
    let applied = copy.as_ref().map_or(0, |c| c.version);
    shared.set_site(copy.map_or(SiteGate::Waiting, |c| SiteGate::Copy(Arc::new(c))));
    let replica = Replica::new(&secrets.site, secrets.public_key()?, secrets.data_key()?, applied)?;
    let (client, connection) = Client::new(options(config, &secrets)?, 256);
    let outbox = Outbox::load(paths.cursor());
    let mut link = Link {
        door: secrets.door.clone(),
        topics: Topics::new(&secrets.site)?,
        client,
        replica,
        outbox,
        shared,
        paths,
        connected: false,
        last_status: None,
        last_resend: None,
        resend_asked: None,
        error: None,
    };
    tracing::info!("fleet: door {:?} of site {:?} via {}, site version {applied}", link.door, secrets.site, config.broker);
    Ok(std::thread::Builder::new().name("fleet".into()).spawn(move || link.run(connection, &stop))?)
}

fn options(config: &Fleet, secrets: &DoorSecrets) -> Result<MqttOptions> {
    let mut o = facegate_site::mqtt::options(&facegate_site::mqtt::Login {
        broker: &config.broker,
        ca_file: &config.ca_file,
        client_id: format!("facegate-{}-{}", secrets.site, secrets.door),
        username: &secrets.username,
        password: &secrets.password,
        keep_alive: Duration::from_secs(config.keep_alive_s),
    })
    .context("fleet.broker / fleet.ca_file")?;
    // The retained state and the saved cursor carry everything across a
    // reconnect; nothing is left to a broker-side session.
    o.set_clean_session(true);
    let topics = Topics::new(&secrets.site)?;
    let offline = serde_json::json!({"door": secrets.door, "online": false});
    o.set_last_will(LastWill::new(topics.status(&secrets.door), offline.to_string(), QoS::AtLeastOnce, true));
    Ok(o)
}

/// The access log as an outbox: what was published, and what the broker
/// handed back (delivered).
struct Outbox {
    /// Every event up to here is delivered.
    delivered: u64,
    /// Every event up to here was published (since the last connect).
    published: u64,
    /// Delivered beyond `delivered` (out of order).
    echoed: BTreeSet<u64>,
    /// Sequence ranges the log no longer holds (overwritten while offline).
    gaps: Vec<(u64, u64)>,
    /// Events the log lost before they were sent.
    lost: u64,
    /// Sending again on request: the next seq, and the last one to send again.
    resend: Option<(u64, u64)>,
    path: PathBuf,
    saved: u64,
    saved_at: Instant,
}

impl Outbox {
    fn load(path: PathBuf) -> Self {
        let delivered = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        Outbox {
            delivered,
            published: delivered,
            echoed: BTreeSet::new(),
            gaps: Vec::new(),
            lost: 0,
            resend: None,
            path,
            saved: delivered,
            saved_at: Instant::now(),
        }
    }

    /// After a (re)connect: everything not handed back is sent again.
    fn rewind(&mut self) {
        self.published = self.delivered;
    }

    fn echo(&mut self, seq: u64) {
        if seq > self.delivered {
            self.echoed.insert(seq);
        }
        self.advance();
    }

    /// The next event the log holds is `seq`: those before it that were
    /// never sent are lost (overwritten or torn before they could be).
    fn skip_to(&mut self, seq: u64) {
        if seq > self.published + 1 {
            tracing::warn!("fleet: events {}..{} were lost from the log before they were sent", self.published + 1, seq - 1);
            self.lost += seq - self.published - 1;
            self.gaps.push((self.published + 1, seq - 1));
            self.published = seq - 1;
            self.advance();
        }
    }

    fn advance(&mut self) {
        loop {
            let next = self.delivered + 1;
            if self.echoed.remove(&next) {
                self.delivered = next;
            } else if let Some(at) = self.gaps.iter().position(|&(from, _)| from == next) {
                self.delivered = self.gaps.swap_remove(at).1;
            } else {
                break;
            }
        }
    }

    /// Saves the cursor at most once a second (a crash re-sends at most that
    /// second's events; the collector drops duplicates by (door, seq)).
    fn save(&mut self, force: bool) {
        if self.delivered != self.saved && (force || self.saved_at.elapsed() >= Duration::from_secs(1)) {
            match facegate_store::atomic::replace(&self.path, self.delivered.to_string().as_bytes(), false) {
                Ok(()) => self.saved = self.delivered,
                Err(e) => tracing::warn!("fleet: saving {}: {e}", self.path.display()),
            }
            self.saved_at = Instant::now();
        }
    }
}

struct Link {
    door: String,
    topics: Topics,
    client: Client,
    replica: Replica,
    outbox: Outbox,
    shared: Arc<Shared>,
    paths: FleetPaths,
    connected: bool,
    last_status: Option<Instant>,
    last_resend: Option<Instant>,
    resend_asked: Option<u64>,
    error: Option<String>,
}

impl Link {
    fn run(&mut self, mut connection: Connection, stop: &AtomicBool) {
        let mut backoff = Duration::from_millis(250);
        while !stop.load(Ordering::Relaxed) {
            match connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(rumqttc::Event::Incoming(Packet::ConnAck(_)))) => {
                    backoff = Duration::from_millis(250);
                    self.on_connect();
                }
                Ok(Ok(rumqttc::Event::Incoming(Packet::Publish(p)))) => self.on_message(&p.topic, &p.payload),
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Err(e)) => {
                    if std::mem::take(&mut self.connected) {
                        tracing::warn!("fleet: lost the broker ({e}); deciding from the saved copy");
                    } else {
                        tracing::debug!("fleet: broker: {e}");
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.connected {
                self.send_events();
                if self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                    self.publish_status();
                }
            }
            self.outbox.save(false);
        }
        self.outbox.save(true);
        if self.connected {
            let offline = serde_json::json!({"door": self.door, "online": false});
            let _ = self.client.try_publish(self.topics.status(&self.door), QoS::AtLeastOnce, true, offline.to_string());
            let _ = self.client.try_disconnect();
            // Let the event loop send both.
            let end = Instant::now() + Duration::from_millis(500);
            while Instant::now() < end {
                if let Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) = connection.recv_timeout(Duration::from_millis(50)) {
                    break;
                }
            }
        }
    }

    fn on_connect(&mut self) {
        self.connected = true;
        tracing::info!("fleet: connected to the broker");
        let t = &self.topics;
        let filters = [t.manifest(), t.people(), t.events(&self.door), t.resend(&self.door)];
        let subscribe = filters.into_iter().map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
        if let Err(e) = self.client.try_subscribe_many(subscribe) {
            tracing::warn!("fleet: subscribing: {e}");
        }
        self.outbox.rewind();
        self.publish_status();
    }

    fn on_message(&mut self, topic: &str, payload: &[u8]) {
        if topic == self.topics.events(&self.door) {
            if let Some(seq) = serde_json::from_slice::<serde_json::Value>(payload).ok().and_then(|v| v["seq"].as_u64()) {
                self.outbox.echo(seq);
            }
            return;
        }
        if topic == self.topics.resend(&self.door) {
            self.on_resend(payload);
            return;
        }
        match self.replica.receive(topic, payload) {
            Ok(Received::Manifest(v)) => tracing::debug!("fleet: site version {v} announced"),
            Ok(_) => {}
            Err(e) => {
                // Forged, replayed under another topic, or garbage: logged, nothing changes.
                tracing::warn!("fleet: refused a message on {topic}: {e}");
                self.shared.events.named(EventKind::Refused, &format!("site {topic}: {e}"));
                return;
            }
        }
        match self.replica.complete() {
            Ok(Some(snapshot)) => {
                let version = snapshot.version;
                match self.apply(&snapshot) {
                    Ok(()) => {
                        self.replica.mark_applied(version);
                        self.error = None;
                        self.shared.events.named(EventKind::SiteSynced, &format!("version {version}"));
                        self.publish_status();
                    }
                    Err(e) => self.failed(format!("site version {version} not applied: {e:#}")),
                }
            }
            Ok(None) => {}
            Err(e) => self.failed(format!("site version not applied: {e}")),
        }
    }

    /// `{"from": N}`: events N… that were already sent go out again. Asks
    /// are merged (the lowest N) and served at most once per [`RESEND_EVERY`].
    fn on_resend(&mut self, payload: &[u8]) {
        let Some(from) = serde_json::from_slice::<serde_json::Value>(payload).ok().and_then(|v| v["from"].as_u64()) else {
            tracing::warn!("fleet: ignored a resend request that is not {{\"from\": N}}");
            return;
        };
        self.resend_asked = Some(self.resend_asked.map_or(from, |f| f.min(from)).max(1));
    }

    /// Starts serving an ask once the last one is done and old enough.
    fn start_resend(&mut self) {
        let Some(from) = self.resend_asked else { return };
        if self.outbox.resend.is_some() || self.last_resend.is_some_and(|t| t.elapsed() < RESEND_EVERY) {
            return;
        }
        self.resend_asked = None;
        let until = self.outbox.published;
        if from <= until {
            tracing::info!("fleet: sending events {from}..={until} again, as asked");
            self.outbox.resend = Some((from, until));
            self.last_resend = Some(Instant::now());
        }
    }

    fn failed(&mut self, why: String) {
        if self.error.as_deref() != Some(why.as_str()) {
            tracing::error!("fleet: {why}");
            self.shared.events.named(EventKind::Error, &why);
            self.error = Some(why);
            self.publish_status();
        }
    }

    /// Rules copy first, then the gallery: both saved atomically, then in force.
    fn apply(&mut self, snapshot: &Snapshot) -> Result<()> {
        let model = self.shared.gallery().model_id();
        if snapshot.model != model {
            bail!(
                "the site's templates are of model {}, this door runs model {model} (update the door or the site)",
                snapshot.model
            );
        }
        let copy = DoorCopy::of(snapshot, &self.door)?;
        // Changed on a copy of the gallery, so a person who stays keeps their
        // id, and a removed person's id is never given again: a decision
        // still in flight for them finds nobody and is denied.
        let mut gallery = self.shared.gallery().clone();
        let now = (now_ms() / 1000) as u64;
        let wanted: std::collections::HashSet<&str> = snapshot.people.iter().map(|p| p.name.as_str()).collect();
        let gone: Vec<String> =
            gallery.people().iter().filter(|p| !wanted.contains(p.name.as_str())).map(|p| p.name.clone()).collect();
        for name in gone {
            gallery.remove(&name)?;
        }
        for p in &snapshot.people {
            let person = || format!("person {:?}", p.id);
            match gallery.enroll(&p.name, p.templates.clone(), model, now) {
                Ok(_) => {}
                // Same name, new templates: the old ones go.
                Err(facegate_store::StoreError::AlreadyEnrolled(_)) => {
                    gallery.remove(&p.name)?;
                    gallery.add_person(&p.name, p.templates.clone(), model, now).with_context(person)?;
                }
                Err(e) => return Err(e).with_context(person),
            }
        }
        facegate_store::atomic::replace(&self.paths.site, &copy.to_bytes(), false)
            .with_context(|| format!("saving {}", self.paths.site.display()))?;
        self.shared.gallery.replace(&gallery.to_bytes(), gallery).map_err(|e| anyhow::anyhow!("saving the gallery: {e}"))?;
        self.shared.set_site(SiteGate::Copy(Arc::new(copy)));
        Ok(())
    }

    fn publish_status(&mut self) {
        let (people, templates, model) = {
            let g = self.shared.gallery();
            (g.people().len(), g.template_count(), g.model_id().to_hex())
        };
        let status = serde_json::json!({
            "door": self.door,
            "online": true,
            "version": self.replica.applied(),
            "pending": self.replica.pending().map(|(v, missing)| serde_json::json!({"version": v, "missing": missing})),
            "people": people,
            "templates": templates,
            "model": model,
            "free_bytes": free_bytes(self.shared.gallery.path()),
            "events_first": self.shared.events.first_seq(),
            "events_last": self.shared.events.last_seq(),
            "events_delivered": self.outbox.delivered,
            "events_lost": self.outbox.lost,
            "error": self.error,
            "time": iso_time(now_ms()),
        });
        match self.client.try_publish(self.topics.status(&self.door), QoS::AtLeastOnce, true, status.to_string()) {
            Ok(()) => self.last_status = Some(Instant::now()),
            Err(e) => tracing::debug!("fleet: status: {e}"),
        }
    }

    fn publish_event(&self, e: &Event) -> bool {
        let mut json = e.to_json();
        json["door"] = self.door.clone().into();
        self.client.try_publish(self.topics.events(&self.door), QoS::AtLeastOnce, false, json.to_string()).is_ok()
    }

    fn read_log(&self, after: u64, at_most: u64) -> Option<Vec<Event>> {
        let log = self.shared.events.log()?;
        match log.events_after(after, at_most as usize) {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!("fleet: reading the access log: {e}");
                None
            }
        }
    }

    /// Sends a batch of what a collector asked for again.
    fn send_again(&mut self) {
        self.start_resend();
        let Some((next, until)) = self.outbox.resend else { return };
        let Some(batch) = self.read_log(next - 1, (until - next + 1).min(WINDOW)) else { return };
        let mut sent_to = batch.first().map_or(until.min(next + WINDOW - 1), |e| e.seq - 1);
        for e in batch.iter().filter(|e| e.seq <= until) {
            if !self.publish_event(e) {
                break; // the request queue is full: next round
            }
            sent_to = e.seq;
        }
        self.outbox.resend = (sent_to < until).then_some((sent_to + 1, until));
    }

    /// Publishes logged events the broker has not been sent yet.
    fn send_events(&mut self) {
        self.send_again();
        let last = self.shared.events.last_seq();
        if last <= self.outbox.published || self.outbox.published.saturating_sub(self.outbox.delivered) >= WINDOW {
            return;
        }
        let Some(batch) = self.read_log(self.outbox.published, WINDOW) else { return };
        if batch.is_empty() {
            // The whole range is unreadable (torn by power cuts): never sent, counted lost.
            self.outbox.skip_to(last.min(self.outbox.published + WINDOW) + 1);
        }
        for e in batch {
            self.outbox.skip_to(e.seq);
            if !self.outbox.echoed.contains(&e.seq) && !self.publish_event(&e) {
                return; // the request queue is full: next round
            }
            self.outbox.published = e.seq;
        }
    }
}

/// Free bytes on the file system holding `path` (0 when unknown).
fn free_bytes(path: &Path) -> u64 {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs4::available_space(dir).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_counts_delivered_only_when_contiguous_and_skips_what_the_log_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.fgsite.sent");
        let mut o = Outbox::load(path.clone());
        assert_eq!(o.delivered, 0);
        o.published = 5;
        o.echo(2);
        o.echo(3);
        assert_eq!(o.delivered, 0, "1 is not back yet");
        o.echo(1);
        assert_eq!(o.delivered, 3);
        o.echo(3);
        assert_eq!(o.delivered, 3, "a duplicate echo changes nothing");
        o.rewind();
        assert_eq!(o.published, 3, "after a reconnect, 4 and 5 are sent again");
        o.skip_to(4);
        assert_eq!((o.lost, o.published), (0, 3), "4 is next: nothing skipped");
        o.skip_to(10);
        assert_eq!((o.lost, o.published, o.delivered), (6, 9, 9), "4-9 left the log unsent: lost, and not waited for");
        o.echo(10);
        assert_eq!(o.delivered, 10);
        o.save(true);
        assert_eq!(Outbox::load(path).delivered, 10, "the cursor survives a restart");
    }
}
