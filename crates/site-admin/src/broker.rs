//! The administrator's connection to the site's broker (MQTT over TLS).

use crate::SiteConfig;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rumqttc::{Client, Connection, Event, Packet, QoS};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A connected client and the site's topics.
pub struct Link {
    client: Client,
    connection: Connection,
    topics: facegate_site::Topics,
    events_filter: Option<String>,
    /// Events that arrived while statuses were read (a persistent session
    /// delivers what was queued for it at once): kept for [`Link::next_event`].
    early_events: VecDeque<Value>,
    /// Filters subscribed to again when the broker lost the session.
    watched: Vec<String>,
}

/// What a door publishes, as [`Link::watch`] hands it over.
#[derive(Debug, Clone)]
pub enum DoorMessage {
    /// A door's status (checked), by door.
    Status(String, Value),
    /// An event, its `door` taken from the topic.
    Event(Value),
}

impl Link {
    /// Connects as the site's administrator; `role` names the client, and a
    /// persistent session (`clean` false) keeps QoS 1 messages for it while away.
    pub fn connect(config: &SiteConfig, role: &str, clean: bool) -> Result<Self> {
        let client_id = match clean {
            true => format!("facegate-{}-{role}-{}", config.name, std::process::id()),
            false => format!("facegate-{}-{role}", config.name),
        };
        let mut o = facegate_site::mqtt::options(&facegate_site::mqtt::Login {
            broker: &config.broker,
            ca_file: &config.ca_file,
            client_id,
            username: &config.username,
            password: &config.password,
            keep_alive: Duration::from_secs(10),
        })?;
        o.set_clean_session(clean);
        let (client, mut connection) = Client::new(o, 8192);
        // Wait for the broker's welcome: a wrong password or certificate is said here.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Err(e)) => bail!("cannot reach the broker {}: {e}", config.broker),
                _ if Instant::now() > deadline => bail!("the broker {} did not answer within 10 s", config.broker),
                _ => {}
            }
        }
        Ok(Link {
            client,
            connection,
            topics: facegate_site::Topics::new(&config.name)?,
            events_filter: None,
            early_events: VecDeque::new(),
            watched: Vec::new(),
        })
    }

    /// Publishes `messages` retained at QoS 1 and waits until the broker has
    /// acknowledged each one (an empty payload clears a retained record).
    pub fn publish_retained(&mut self, messages: &[(String, Vec<u8>)], quiet: bool) -> Result<()> {
        let pb = if quiet || messages.len() < 20 { ProgressBar::hidden() } else { ProgressBar::new(messages.len() as u64) };
        pb.set_style(ProgressStyle::with_template("publishing [{bar:30}] {pos}/{len}").expect("template").progress_chars("=> "));
        let mut queued = 0;
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(60 + messages.len() as u64 / 50);
        while acked < messages.len() {
            // Keep the request queue fed without blocking the event loop.
            while queued < messages.len() && queued - acked < 1000 {
                let (topic, payload) = &messages[queued];
                self.client.try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone()).context("queueing a message")?;
                queued += 1;
            }
            match self.connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                    acked += 1;
                    pb.inc(1);
                }
                Ok(Err(e)) => bail!("publishing to the broker: {e} ({acked} of {} acknowledged)", messages.len()),
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("the broker acknowledged {acked} of {} messages in time", messages.len());
            }
        }
        pb.finish_and_clear();
        Ok(())
    }

    /// The site's records retained on the broker now (manifest and people):
    /// topic → digest of the payload. Read until the broker is quiet for half a second.
    pub fn retained_records(&mut self) -> Result<BTreeMap<String, [u8; 32]>> {
        self.subscribe(self.topics.manifest())?;
        self.subscribe(self.topics.people())?;
        let mut out = BTreeMap::new();
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_millis(500) {
            match self.connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.retain => {
                    out.insert(p.topic.clone(), facegate_site::records::digest(&p.payload));
                    last = Instant::now();
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => last = Instant::now(),
                Ok(Err(e)) => bail!("reading the site's records from the broker: {e}"),
                _ => {}
            }
        }
        self.client.unsubscribe(self.topics.manifest()).context("unsubscribing")?;
        self.client.unsubscribe(self.topics.people()).context("unsubscribing")?;
        Ok(out)
    }

    /// Makes the broker's retained records exactly `messages`: reads what it
    /// holds and publishes the [`changes`] (e.g. after the broker lost its
    /// last seconds in a crash). Returns how many messages were sent.
    pub fn publish_missing(&mut self, messages: &[(String, Vec<u8>)], quiet: bool) -> Result<usize> {
        let send = changes(&self.retained_records()?, messages);
        self.publish_retained(&send, quiet)?;
        Ok(send.len())
    }

    /// The manifest retained on the broker now (its digest and bytes), if any.
    pub fn retained_manifest(&mut self) -> Result<Option<([u8; 32], Vec<u8>)>> {
        let topic = self.topics.manifest();
        self.subscribe(topic.clone())?;
        let mut subscribed: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = None;
        // The broker sends what it retains right after its acknowledgement.
        while found.is_none() && subscribed.is_none_or(|t| t.elapsed() < Duration::from_millis(300)) {
            if Instant::now() > deadline {
                bail!("the broker did not acknowledge a subscription within 10 s");
            }
            match self.connection.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = Some(Instant::now()),
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == topic && !p.payload.is_empty() => {
                    found = Some((facegate_site::records::digest(&p.payload), p.payload.to_vec()));
                }
                Ok(Err(e)) => bail!("reading the site's manifest from the broker: {e}"),
                _ => {}
            }
        }
        self.client.unsubscribe(topic).context("unsubscribing")?;
        Ok(found)
    }

    fn subscribe(&mut self, filter: String) -> Result<()> {
        self.client.subscribe(filter, QoS::AtLeastOnce).context("subscribing")?;
        Ok(())
    }

    /// The doors' retained statuses, read for up to `quiet` after the last one.
    pub fn statuses(&mut self, doors: &[String], quiet: Duration) -> Result<BTreeMap<String, Value>> {
        self.subscribe(self.topics.all_status())?;
        let mut out = BTreeMap::new();
        let mut last = Instant::now();
        while last.elapsed() < quiet && out.len() < doors.len() {
            if let Some((door, status)) = self.next_status()? {
                out.insert(door, status);
                last = Instant::now();
            }
        }
        Ok(out)
    }

    fn next_status(&mut self) -> Result<Option<(String, Value)>> {
        match self.next_door_message(Duration::from_millis(100))? {
            Some(DoorMessage::Status(door, status)) => Ok(Some((door, status))),
            // An event queued for this session: kept, not read as a status.
            Some(DoorMessage::Event(event)) => {
                self.early_events.push_back(event);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// The next door status or event received within `wait`. A status is
    /// written by a door's login: checked whole before anything reads it
    /// (ignored with a warning otherwise).
    fn next_door_message(&mut self, wait: Duration) -> Result<Option<DoorMessage>> {
        match self.connection.recv_timeout(wait) {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let Some(door) = self.topics.door_of(&p.topic).map(str::to_string) else { return Ok(None) };
                if p.topic != self.topics.status(&door) {
                    return Ok(self.event_of(&p.topic, &p.payload).map(DoorMessage::Event));
                }
                match facegate_site::DoorStatus::from_json(&p.payload) {
                    Ok(_) => Ok(serde_json::from_slice(&p.payload).ok().map(|status| DoorMessage::Status(door, status))),
                    Err(e) => {
                        eprintln!("warning: door {door}: ignored its status: {e}");
                        Ok(None)
                    }
                }
            }
            // Back after a broker restart that lost the session: subscribe again.
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) if !ack.session_present => {
                for filter in self.watched.clone() {
                    self.subscribe(filter)?;
                }
                Ok(None)
            }
            Ok(Err(e)) => bail!("the broker: {e}"),
            _ => Ok(None),
        }
    }

    /// Follows every door's status and events: calls `each` with what
    /// arrives (statuses retained on the broker first) until it returns
    /// false; an error when the broker is lost.
    pub fn watch(&mut self, mut each: impl FnMut(DoorMessage) -> bool) -> Result<()> {
        for filter in [self.topics.all_status(), self.topics.all_events()] {
            self.subscribe(filter.clone())?;
            self.watched.push(filter);
        }
        loop {
            if let Some(message) = self.next_door_message(Duration::from_millis(200))? {
                if !each(message) {
                    return Ok(());
                }
            }
        }
    }

    /// Waits until every door's status says it holds `version` (with the
    /// manifest of digest `manifest`, hex, when given), or the time is up.
    pub fn wait_for_doors(
        &mut self,
        doors: &[String],
        version: u64,
        manifest: Option<&str>,
        within: Duration,
        quiet: bool,
    ) -> Result<BTreeMap<String, Value>> {
        self.subscribe(self.topics.all_status())?;
        let pb = if quiet { ProgressBar::hidden() } else { ProgressBar::new(doors.len() as u64) };
        pb.set_style(
            ProgressStyle::with_template("doors at version {msg} [{bar:30}] {pos}/{len}")
                .expect("template")
                .progress_chars("=> "),
        );
        pb.set_message(version.to_string());
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        // Done when it holds this version, or one beyond (the caller says this state is stale).
        let done = |out: &BTreeMap<String, Value>, d: &String| {
            out.get(d).is_some_and(|s| holds(s, version, manifest) || s["version"].as_u64() > Some(version))
        };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && !doors.iter().all(|d| done(&out, d)) {
            if let Some((door, status)) = self.next_status()? {
                out.insert(door, status);
                pb.set_position(doors.iter().filter(|d| done(&out, d)).count() as u64);
            }
        }
        pb.finish_and_clear();
        Ok(out)
    }

    /// Subscribes to the events of the site's doors (or one door).
    pub fn subscribe_events(&mut self, door: Option<&str>) -> Result<()> {
        let filter = match door {
            Some(d) => self.topics.events(d),
            None => self.topics.all_events(),
        };
        self.events_filter = Some(filter.clone());
        self.subscribe(filter)
    }

    /// The next event received within `wait` (duplicates included). With
    /// `reconnect`, a lost broker is waited for (the client reconnects and
    /// subscribes again); without, it is an error.
    pub fn next_event(&mut self, wait: Duration, reconnect: bool) -> Result<Option<Value>> {
        if let Some(event) = self.early_events.pop_front() {
            return Ok(Some(event));
        }
        match self.connection.recv_timeout(wait) {
            // Back after a broker restart that lost the session: subscribe again.
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) if !ack.session_present => {
                if let Some(f) = self.events_filter.clone() {
                    self.subscribe(f)?;
                }
                Ok(None)
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => Ok(self.event_of(&p.topic, &p.payload)),
            Ok(Err(e)) if !reconnect => bail!("the broker: {e}"),
            Ok(Err(e)) => {
                eprintln!("the broker: {e}; reconnecting");
                std::thread::sleep(Duration::from_secs(1));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// An event as received on `topic`, with its door taken from the topic:
    /// a door's login can publish on its own topics only (the ACL), so what
    /// its payload says its door is, is not evidence. Not a JSON object: none.
    fn event_of(&self, topic: &str, payload: &[u8]) -> Option<Value> {
        let door = self.topics.door_of(topic)?;
        let mut event: Value = serde_json::from_slice(payload).ok()?;
        event.as_object_mut()?.insert("door".into(), door.into());
        Some(event)
    }

    /// Asks `door` to send its events from `from` on again (it does while
    /// its log holds them, [`facegate_site::resend::MAX_RESEND`] at a time,
    /// at most one request per two seconds: the caller asks again for the
    /// rest). Signed with the admin key: doors take no other.
    pub fn ask_resend(&mut self, door: &str, from: u64, admin: &facegate_site::AdminKey) -> Result<()> {
        let until = from + facegate_site::resend::MAX_RESEND - 1;
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let topic = self.topics.resend(door);
        let request = facegate_site::resend::ResendRequest { from, until, at_ms }.sign(admin, &topic);
        self.client.try_publish(topic, QoS::AtLeastOnce, false, request).context("asking a door to resend")
    }

    /// Calls `each` for every copy of every event received (duplicates
    /// included); stops after a quiet second unless `follow`.
    pub fn events_raw(&mut self, door: Option<&str>, follow: bool, mut each: impl FnMut(&Value)) -> Result<()> {
        self.subscribe_events(door)?;
        let mut last = Instant::now();
        loop {
            if let Some(e) = self.next_event(Duration::from_millis(100), follow)? {
                last = Instant::now();
                each(&e);
            }
            if !follow && last.elapsed() > Duration::from_secs(1) {
                return Ok(());
            }
        }
    }
}

/// Whether a door's `status` says it holds `version` and, when given, the
/// manifest of digest `manifest` (hex): two copies of a site state can
/// publish different manifests under one version number.
pub fn holds(status: &Value, version: u64, manifest: Option<&str>) -> bool {
    status["version"].as_u64() == Some(version) && manifest.is_none_or(|m| status["manifest"].as_str() == Some(m))
}

/// What turns retained records whose digests are `held` (topic → digest)
/// into exactly `messages`: clears for topics no longer wanted, then every
/// message that differs, in `messages`' order (the manifest is last there,
/// so a door never sees it before its people).
pub fn changes(held: &BTreeMap<String, [u8; 32]>, messages: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let wanted: HashSet<&String> = messages.iter().map(|(t, _)| t).collect();
    let clears = held.keys().filter(|t| !wanted.contains(t)).map(|t| (t.clone(), Vec::new()));
    let differs = messages.iter().filter(|(t, p)| held.get(t) != Some(&facegate_site::records::digest(p))).cloned();
    clears.chain(differs).collect()
}
