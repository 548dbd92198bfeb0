//! The site link (`[fleet]`): the door's people and access rules come from
//! its site's retained records on an MQTT broker, its events and status go
//! back there.
//!
//! - Every record is checked against the site's admin key and applied only
//!   as a complete, newer version ([`facegate_site::Replica`]), never below
//!   the version the door joined at nor issued before the one it holds or
//!   too long ago. The gallery is saved and swapped first (the same atomic
//!   save as serial provisioning), then the rules copy, which names the
//!   gallery's digest: a copy whose gallery differs (a save that failed) is
//!   not taken as applied, nobody passes, and the version is applied again.
//! - Messages that are refused (unsigned, forged, garbage) are logged as
//!   one `refused` event per minute with their count, so junk cannot wash
//!   the access log's ring.
//! - The access log is the outbox: events are published at least once, each
//!   with (door, seq). The door subscribes to its own events topic, and an
//!   event counts as delivered once the broker hands it back; the cursor of
//!   delivered events is saved, so events raised offline or before a restart
//!   are sent after reconnecting, never re-numbered.
//! - A collector that missed events (a broker crash loses what it had not
//!   saved) asks for them again on the door's `resend` topic; the door
//!   sends what its log still holds of that range, at most
//!   [`facegate_site::resend::MAX_RESEND`] events, once per [`RESEND_EVERY`],
//!   and only when the request is signed by the site's admin key and new.
//! - The MQTT client id carries random bytes: no other login can take the
//!   door's session over by guessing it.
//! - The frame loop never waits for this thread: it reads the gallery and
//!   the rules through locks held only for a pointer swap.

use crate::config::Fleet;
use crate::events::now_ms;
use crate::shared::{Shared, SiteGate};
use anyhow::{bail, Context, Result};
use facegate_provision::GalleryHome;
use facegate_site::resend::ResendRequest;
use facegate_site::status::Pending;
use facegate_site::{
    DoorCopy, DoorSecrets, DoorStatus, Freshness, Received, Replica, SiteError, SitePublicKey, Snapshot, Topics,
};
use facegate_store::access_log::iso_time;
use facegate_store::{Event, EventKind, Gallery};
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
/// Refused messages are logged as one event per this long.
const REFUSED_EVERY: Duration = Duration::from_secs(60);

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
    let mut error = None;
    let copy = match read_copy(&paths.site, &secrets.door, &shared.gallery()) {
        Ok(copy) => copy,
        Err(why) => {
            tracing::error!("fleet: {why}");
            shared.events.named(EventKind::Error, &why);
            error = Some(why);
            None
        }
    };
    // A gallery switched to another network since its version was applied
    // serves at once, and takes that version again from the broker: people
    // enrolled with this network only are added.
    let switched = copy.as_ref().is_some_and(|c| !c.matches_gallery(&shared.gallery().to_bytes()));
    let applied = copy.as_ref().map_or(0, |c| if switched { c.version.saturating_sub(1) } else { c.version });
    let freshness = Freshness {
        min_version: secrets.min_version,
        newest_issued_at: copy.as_ref().map_or(0, |c| c.issued_at),
        max_age_s: (config.max_manifest_age_days > 0).then_some(i64::from(config.max_manifest_age_days) * 86_400),
    };
    let manifest = copy.as_ref().map(|c| c.manifest);
    shared.set_site(copy.map_or(SiteGate::Waiting, |c| SiteGate::Copy(Arc::new(c))));
    let replica = Replica::new(&secrets.site, &secrets.door, secrets.public_key()?, secrets.data_key()?, applied)?
        .with_freshness(freshness);
    let (client, connection) = Client::new(options(config, &secrets)?, 256);
    let outbox = Outbox::load(paths.cursor());
    let mut link = Link {
        door: secrets.door.clone(),
        topics: Topics::new(&secrets.site)?,
        client,
        replica,
        manifest,
        outbox,
        shared,
        paths,
        connected: false,
        last_status: None,
        last_resend: None,
        resend_asked: None,
        last_resend_at_ms: 0,
        refused: Refusals::default(),
        error,
        public: secrets.public_key()?,
    };
    tracing::info!("fleet: door {:?} of site {:?} via {}, site version {applied}", link.door, secrets.site, config.broker);
    Ok(std::thread::Builder::new().name("fleet".into()).spawn(move || link.run(connection, &stop))?)
}

/// The door's saved rules copy, read at start: `None` when there is none
/// for this door or it cannot be read (nobody passes until the site is
/// read again), an error (said in the status) when the gallery read from
/// disk is not the one saved with it.
pub fn read_copy(path: &Path, door: &str, gallery: &Gallery) -> std::result::Result<Option<DoorCopy>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(_) => return Ok(None),
    };
    match DoorCopy::from_bytes(&bytes) {
        Ok(c) if c.door == door && !saved_with(&c, gallery) => Err(format!(
            "the gallery is not the one saved with site version {} (a save failed?): nobody passes until the site is applied again",
            c.version
        )),
        Ok(c) if c.door == door => Ok(Some(c)),
        Ok(c) => {
            tracing::warn!("{} is the copy of door {:?}, not {door:?}: waiting for the site", path.display(), c.door);
            Ok(None)
        }
        Err(e) => {
            tracing::error!("{}: {e}; nobody passes until the site is read again", path.display());
            Ok(None)
        }
    }
}

/// Whether `gallery` is the one saved with `copy`, or that one searching
/// another of the networks it keeps (the door's `recognition.network` was
/// changed since): the same people and templates either way.
fn saved_with(copy: &DoorCopy, gallery: &Gallery) -> bool {
    copy.matches_gallery(&gallery.to_bytes())
        || gallery.other_models().into_iter().any(|(model, _)| {
            let mut saved = gallery.clone();
            saved.switch_to(model).is_ok() && copy.matches_gallery(&saved.to_bytes())
        })
}

/// Which save of [`save_applied`] failed.
#[derive(Debug)]
pub enum Unsaved {
    /// The gallery: nothing changed, on disk or in force.
    Gallery(anyhow::Error),
    /// The rules copy, after the gallery: the copy on disk no longer names it.
    Copy(anyhow::Error),
}

/// Saves an applied version: the gallery first (and swaps it in), then the
/// rules copy naming its digest, each atomically. A power cut between the
/// two leaves a copy that does not name the gallery: [`read_copy`] refuses
/// it and the version is applied again.
pub fn save_applied(
    home: &GalleryHome,
    bytes: &[u8],
    gallery: Gallery,
    site: &Path,
    copy: &DoorCopy,
) -> std::result::Result<(), Unsaved> {
    home.replace(bytes, gallery).map_err(|e| Unsaved::Gallery(anyhow::anyhow!("saving the gallery: {e}")))?;
    facegate_store::atomic::replace(site, &copy.to_bytes(), false)
        .with_context(|| format!("saving {}", site.display()))
        .map_err(Unsaved::Copy)
}

fn options(config: &Fleet, secrets: &DoorSecrets) -> Result<MqttOptions> {
    // Random per start: a predictable id would let any login of the broker
    // take the door's session over (and publish its "offline" will).
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no random bytes for the MQTT client id: {e}"))?;
    let mut o = facegate_site::mqtt::options(&facegate_site::mqtt::Login {
        broker: &config.broker,
        ca_file: &config.ca_file,
        client_id: format!("facegate-{}-{}-{}", secrets.site, secrets.door, facegate_core::hex(&nonce)),
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

/// Refused messages, told as one event per [`REFUSED_EVERY`].
#[derive(Default)]
struct Refusals {
    /// Refused since the last event, and the last reason.
    untold: u64,
    last_why: String,
    told_at: Option<Instant>,
}

impl Refusals {
    /// Counts one refusal; the text of an event to log now, if one is due.
    fn refuse(&mut self, why: String) -> Option<String> {
        self.untold += 1;
        self.last_why = why;
        self.due()
    }

    /// The event text when refusals are untold and the last event is old
    /// enough (or this is the first).
    fn due(&mut self) -> Option<String> {
        if self.untold == 0 || self.told_at.is_some_and(|t| t.elapsed() < REFUSED_EVERY) {
            return None;
        }
        let text = match self.untold {
            1 => self.last_why.clone(),
            n => format!("{n} messages refused; the last: {}", self.last_why),
        };
        self.untold = 0;
        self.told_at = Some(Instant::now());
        Some(text)
    }
}

struct Link {
    door: String,
    /// The site's key: resend asks are signed with it.
    public: SitePublicKey,
    topics: Topics,
    client: Client,
    replica: Replica,
    /// The digest of the manifest applied.
    manifest: Option<[u8; 32]>,
    outbox: Outbox,
    shared: Arc<Shared>,
    paths: FleetPaths,
    connected: bool,
    last_status: Option<Instant>,
    last_resend: Option<Instant>,
    resend_asked: Option<(u64, u64)>,
    /// The time of the last resend request taken (each is taken once).
    last_resend_at_ms: i64,
    refused: Refusals,
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
            if let Some(text) = self.refused.due() {
                self.shared.events.named(EventKind::Refused, &text);
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
            // Signed by the site, still not taken (replayed, too old): the administrator must know.
            Err(SiteError::Refused(why)) => {
                self.failed(why);
                return;
            }
            Err(e) => {
                // Forged, replayed under another topic, or garbage: nothing changes, and
                // the log gets one event a minute however many come.
                tracing::debug!("fleet: refused a message on {topic}: {e}");
                self.refuse(format!("site {topic}: {e}"));
                return;
            }
        }
        match self.replica.complete() {
            Ok(Some(snapshot)) => {
                let version = snapshot.version;
                match self.apply(&snapshot) {
                    Ok(()) => {
                        self.replica.mark_applied(&snapshot);
                        self.manifest = Some(snapshot.manifest);
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

    fn refuse(&mut self, why: String) {
        if let Some(text) = self.refused.refuse(why) {
            tracing::warn!("fleet: {text}");
            self.shared.events.named(EventKind::Refused, &text);
        }
    }

    /// The administrator's signed request for events `from..=until` again
    /// (cut to [`facegate_site::resend::MAX_RESEND`]). Asks are merged and
    /// served at most once per [`RESEND_EVERY`].
    fn on_resend(&mut self, payload: &[u8]) {
        let topic = self.topics.resend(&self.door);
        match ResendRequest::open(&self.public, &topic, payload, self.last_resend_at_ms, self.replica.clock_floor_now() * 1000) {
            Ok(r) => {
                self.last_resend_at_ms = r.at_ms;
                let (from, until) = self.resend_asked.map_or((r.from, r.until), |(f, u)| (f.min(r.from), u.max(r.until)));
                // Merged asks are cut as one ask is.
                self.resend_asked = Some((from, until.min(from + facegate_site::resend::MAX_RESEND - 1)));
            }
            Err(e) => self.refuse(format!("{topic}: {e}")),
        }
    }

    /// Starts serving an ask once the last one is done and old enough.
    fn start_resend(&mut self) {
        let Some((from, until)) = self.resend_asked else { return };
        if self.outbox.resend.is_some() || self.last_resend.is_some_and(|t| t.elapsed() < RESEND_EVERY) {
            return;
        }
        self.resend_asked = None;
        let until = until.min(self.outbox.published);
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

    /// The gallery first, then the rules copy naming its digest: both saved
    /// atomically, then in force. A failure between the two leaves a copy
    /// that does not name the gallery: at the next start nobody passes and
    /// the version is applied again.
    fn apply(&mut self, snapshot: &Snapshot) -> Result<()> {
        let model = self.shared.gallery().model_id();
        if snapshot.model != model && !snapshot.others.contains(&model) {
            bail!(
                "the site holds templates of model {}{}, this door runs model {model}: set recognition.network to a network \
                 the site holds (`host-tool --site … network` lists them), or enrol the site's people with this door's \
                 network too (`host-tool --site … --network both enroll NAME PHOTO…`)",
                snapshot.model,
                snapshot.others.iter().map(|m| format!(" and {m}")).collect::<String>()
            );
        }
        // Changed on a copy of the gallery, so a person who stays keeps their
        // id, and a removed person's id is never given again: a decision
        // still in flight for them finds nobody and is denied.
        let mut gallery = self.shared.gallery().clone();
        let now = (now_ms() / 1000) as u64;
        // Only the people with templates of this door's network are searched
        // here; the others are counted in the status.
        let searched: Vec<(&facegate_site::SitePerson, &[facegate_core::Embedding])> =
            snapshot.people.iter().filter_map(|p| Some((p, p.templates_of(snapshot.model, model)?))).collect();
        let without = snapshot.people.len() - searched.len();
        if without > 0 {
            tracing::warn!(
                "fleet: {without} of the site's people have no templates of this door's network: they are not recognised \
                 here until enrolled with it"
            );
        }
        let wanted: std::collections::HashSet<&str> = searched.iter().map(|(p, _)| p.name.as_str()).collect();
        let gone: Vec<String> =
            gallery.people().iter().filter(|p| !wanted.contains(p.name.as_str())).map(|p| p.name.clone()).collect();
        for name in gone {
            gallery.remove(&name)?;
        }
        for (p, templates) in searched {
            let person = || format!("person {:?}", p.id);
            match gallery.enroll(&p.name, templates.to_vec(), model, now) {
                Ok(_) => {}
                // Same name, new templates: the old ones go.
                Err(facegate_store::StoreError::AlreadyEnrolled(_)) => {
                    gallery.remove(&p.name)?;
                    gallery.add_person(&p.name, templates.to_vec(), model, now).with_context(person)?;
                }
                Err(e) => return Err(e).with_context(person),
            }
            // The other networks' templates are kept, not searched: the door
            // can be switched to one of them (recognition.network) at once.
            for (other, templates) in p.all_templates(snapshot.model).filter(|(m, _)| *m != model) {
                gallery.set_other_templates(&p.name, other, templates).with_context(person)?;
            }
        }
        let bytes = gallery.to_bytes();
        let copy = DoorCopy::of(snapshot, &self.door, facegate_site::records::digest(&bytes))?;
        match save_applied(&self.shared.gallery, &bytes, gallery, &self.paths.site, &copy) {
            Ok(()) => {}
            Err(Unsaved::Gallery(e)) => return Err(e),
            Err(Unsaved::Copy(e)) => {
                // The old rules do not name this gallery: nobody passes until a save holds.
                self.shared.set_site(SiteGate::Waiting);
                return Err(e);
            }
        }
        self.shared.set_site(SiteGate::Copy(Arc::new(copy)));
        Ok(())
    }

    fn publish_status(&mut self) {
        let (people, templates, model) = {
            let g = self.shared.gallery();
            (g.people().len(), g.template_count(), g.model_id().to_hex())
        };
        // The site's people this door admits but cannot recognise: enrolled
        // without templates of its network.
        let without_templates = match self.shared.site() {
            SiteGate::Copy(copy) => copy.access.len().saturating_sub(people),
            _ => 0,
        };
        let status = DoorStatus {
            door: self.door.clone(),
            online: true,
            version: self.replica.applied(),
            manifest: self.manifest.map(|m| facegate_core::hex(&m)),
            pending: self.replica.pending().map(|(version, missing)| Pending { version, missing: missing as u64 }),
            people: people as u64,
            without_templates: without_templates as u64,
            templates: templates as u64,
            model,
            free_bytes: free_bytes(self.shared.gallery.path()),
            events_first: self.shared.events.first_seq(),
            events_last: self.shared.events.last_seq(),
            events_delivered: self.outbox.delivered,
            events_lost: self.outbox.lost,
            error: self.error.clone(),
            time: iso_time(now_ms()),
        };
        match self.client.try_publish(self.topics.status(&self.door), QoS::AtLeastOnce, true, status.to_json()) {
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
