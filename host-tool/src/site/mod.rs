//! `host-tool --site SITE.toml …`: the administrator's side of a site of
//! many doors. The site is the source of truth: every change is made to the
//! local state (`SITE.state`, beside the site file), then published to the
//! broker as signed, retained records; doors follow on their own.
//!
//! - `SITE.toml` (mode 0600): the site's name, the broker and the
//!   administrator's login, the admin signing key and the data key.
//! - `SITE.state`: the people (templates sealed), groups, doors, schedules,
//!   the version, and what was last published.

mod printed;

use crate::cmd::Global;
use crate::output::{print_json, print_json_line, table};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use facegate_core::ModelId;
use facegate_face::{Network, Precision};
use facegate_site::{Access, AdminKey, DataKey, Door, DoorSecrets, DoorsKnow, Group, PersonRecord, Rules, Schedule, SiteState};
use facegate_site_admin::{broker, SiteConfig};
use printed::Printed;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The site's state as the administrator keeps it.
#[derive(Clone, Serialize, Deserialize)]
struct AdminState {
    site: SiteState,
    /// Topic → digest of what was last published there (so a change sends only what changed).
    published: BTreeMap<String, [u8; 32]>,
    /// When the current version was issued (its manifest is the same bytes
    /// however often it is published again).
    issued_at: i64,
    /// The digest of the manifest the current version follows.
    previous: [u8; 32],
    /// The version of the manifest last published (its digest is in `published`).
    published_version: u64,
    /// Each door's broker login (for the broker's ACL).
    accounts: BTreeMap<String, String>,
    /// Each door's own key (hex): records are sealed for the doors that
    /// admit them. A door without one (joined before doors had keys) holds
    /// the site's data key.
    door_keys: BTreeMap<String, String>,
    /// Who changed what, and when: a postcard tail after the rest, so an
    /// older host tool still reads the state (and a state without one reads
    /// as an empty log).
    #[serde(skip)]
    audit: Vec<AuditEntry>,
    /// How the site is published: a postcard tail after the audit log (which
    /// is then written even when empty), read as the defaults when absent.
    #[serde(skip)]
    settings: Settings,
}

/// Site settings that shape what is published but are no rule a door reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Settings {
    /// Which doors are sent a person's record.
    doors_know: DoorsKnow,
}

/// One change of the site, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// Who: the command line (and its user) or the console (and the address it was used from).
    pub who: String,
    /// What, as a command would say it (`grant Ada staff`).
    pub what: String,
    /// The site version the change made.
    pub version: u64,
}

/// Changes the audit log keeps (the oldest go first).
pub const AUDIT_KEPT: usize = 10_000;

/// The state as written before versions were chained (read, then saved in the new form).
#[derive(Deserialize)]
struct AdminStateV1 {
    site: SiteState,
    published: BTreeMap<String, [u8; 32]>,
}

impl AdminState {
    /// A site never published, issued now.
    fn new(site: SiteState) -> Self {
        AdminState {
            site,
            published: BTreeMap::new(),
            issued_at: chrono_now(),
            previous: [0; 32],
            published_version: 0,
            accounts: BTreeMap::new(),
            door_keys: BTreeMap::new(),
            audit: Vec::new(),
            settings: Settings::default(),
        }
    }

    fn from_bytes(bytes: &[u8]) -> postcard::Result<Self> {
        match postcard::take_from_bytes::<AdminState>(bytes) {
            Ok((mut state, tail)) => {
                if !tail.is_empty() {
                    let (audit, settings) = postcard::take_from_bytes(tail)?;
                    state.audit = audit;
                    if !settings.is_empty() {
                        state.settings = postcard::from_bytes(settings)?;
                    }
                }
                Ok(state)
            }
            Err(e) => {
                let AdminStateV1 { site, published } = postcard::from_bytes(bytes).map_err(|_| e)?;
                let published_version = if published.is_empty() { 0 } else { site.version };
                let (accounts, door_keys, audit) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
                Ok(AdminState {
                    site,
                    published,
                    issued_at: 0,
                    previous: [0; 32],
                    published_version,
                    accounts,
                    door_keys,
                    audit,
                    settings: Settings::default(),
                })
            }
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = postcard::to_allocvec(self).expect("the state serialises");
        let settings = self.settings != Settings::default();
        if !self.audit.is_empty() || settings {
            bytes.extend(postcard::to_allocvec(&self.audit).expect("the audit log serialises"));
        }
        if settings {
            bytes.extend(postcard::to_allocvec(&self.settings).expect("the settings serialise"));
        }
        bytes
    }

    fn door_keys(&self) -> Result<BTreeMap<String, DataKey>> {
        self.door_keys
            .iter()
            .map(|(door, hex)| {
                let key = facegate_core::from_hex(hex).with_context(|| format!("the key of door {door} is damaged"))?;
                Ok((door.clone(), DataKey::from_bytes(key)))
            })
            .collect()
    }

    fn manifest_topic(&self) -> String {
        format!("facegate/{}/manifest", self.site.name)
    }
}

/// A site file and its state beside it.
pub struct SiteHome {
    path: PathBuf,
    config: SiteConfig,
    state: AdminState,
}

fn state_path(site: &Path) -> PathBuf {
    site.with_extension("state")
}

impl SiteHome {
    /// Opens the site file `path` and its state beside it.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the site file {} (create one with `site init`)", path.display()))?;
        let config: SiteConfig = toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        config.admin()?;
        config.data()?;
        let bytes = std::fs::read(state_path(path)).with_context(|| format!("reading {}", state_path(path).display()))?;
        let state = AdminState::from_bytes(&bytes).with_context(|| format!("{} is damaged", state_path(path).display()))?;
        Ok(SiteHome { path: path.to_path_buf(), config, state })
    }

    /// Writes a new site: its state first, then the site file, whose
    /// existence says the site is made (`init` refuses to make it again). A
    /// power cut before the site file leaves no site, and `init` may be run again.
    fn create(path: &Path, config: SiteConfig, state: AdminState) -> Result<Self> {
        let home = SiteHome { path: path.to_path_buf(), config, state };
        home.save()?;
        facegate_store::atomic::replace_private(path, toml::to_string(&home.config)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(home)
    }

    /// The site file's settings.
    pub(crate) fn config(&self) -> &SiteConfig {
        &self.config
    }

    /// The site's state: people, rules, version.
    pub(crate) fn site(&self) -> &SiteState {
        &self.state.site
    }

    /// Writes the site file (mode 0600) after a change of its settings.
    pub(crate) fn save_config(&mut self, config: SiteConfig) -> Result<()> {
        facegate_store::atomic::replace_private(&self.path, toml::to_string(&config)?.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.config = config;
        Ok(())
    }

    /// Which doors are sent a person's record.
    pub(crate) fn doors_know(&self) -> DoorsKnow {
        self.state.settings.doors_know
    }

    /// Who changed what, oldest first.
    pub(crate) fn audit(&self) -> &[AuditEntry] {
        &self.state.audit
    }

    fn save(&self) -> Result<()> {
        let bytes = self.state.to_bytes();
        facegate_store::atomic::replace(&state_path(&self.path), &bytes, true)
            .with_context(|| format!("saving {}", state_path(&self.path).display()))
    }

    /// Validates, counts one more version (issued now, following the
    /// manifest last published), logs `what` with who did it, saves, and
    /// publishes what changed.
    fn commit(&mut self, g: &Global, what: String) -> Result<()> {
        self.state.site.rules.validate()?;
        self.state.site.version += 1;
        let entry = AuditEntry { at: chrono_now(), who: g.actor(), what, version: self.state.site.version };
        self.state.audit.push(entry);
        let excess = self.state.audit.len().saturating_sub(AUDIT_KEPT);
        self.state.audit.drain(..excess);
        self.state.issued_at = chrono_now();
        self.state.previous = self.state.published.get(&self.state.manifest_topic()).copied().unwrap_or_default();
        self.save()?;
        self.publish(g)
    }

    /// Publishes every record that differs from what the broker was last
    /// given, clears removed people, then the manifest; waits for the broker's
    /// acknowledgements.
    fn publish(&mut self, g: &Global) -> Result<()> {
        self.publish_against(g, false)
    }

    /// Makes the broker hold exactly the current records, whatever it lost
    /// or kept (reads its retained records first); for `sync`.
    fn republish(&mut self, g: &Global) -> Result<()> {
        self.publish_against(g, true)
    }

    /// Publishes the changes against what the broker holds (`read_broker`)
    /// or against what this site file last gave it.
    fn publish_against(&mut self, g: &Global, read_broker: bool) -> Result<()> {
        let admin = self.config.admin()?;
        let (data, door_keys) = (self.config.data()?, self.state.door_keys()?);
        let (know, issued_at, previous) = (self.state.settings.doors_know, self.state.issued_at, self.state.previous);
        let messages = self.state.site.messages_known_by(know, &admin, &data, &door_keys, issued_at, previous)?;
        let mut link = broker::Link::connect(&self.config, "admin", true)?;
        self.check_newest(&mut link, &admin)?;
        let sent = if read_broker {
            link.publish_missing(&messages, g.json)?
        } else {
            let send = broker::changes(&self.state.published, &messages);
            link.publish_retained(&send, g.json)?;
            send.len()
        };
        self.state.published = messages.iter().map(|(t, p)| (t.clone(), facegate_site::records::digest(p))).collect();
        self.state.published_version = self.state.site.version;
        self.save()?;
        if !g.json {
            println!(
                "site {} version {}: {sent} of {} messages published",
                self.config.name,
                self.state.site.version,
                messages.len()
            );
        }
        Ok(())
    }

    /// Refuses to publish from a state that is not the newest: the broker
    /// holds a manifest this state did not publish last, at its version or
    /// beyond (another copy of the site file, or one restored from a backup,
    /// published since). An older one is what a broker that lost its last
    /// seconds holds: published over.
    fn check_newest(&self, link: &mut broker::Link, admin: &AdminKey) -> Result<()> {
        let Some((digest, payload)) = link.retained_manifest()? else { return Ok(()) };
        if self.state.published.get(&self.state.manifest_topic()) == Some(&digest) {
            return Ok(());
        }
        let topic = self.state.manifest_topic();
        let held = admin.public().open(&topic, &payload).ok().and_then(|m| facegate_site::Manifest::from_bytes(m).ok());
        match held {
            Some(m) if m.version >= self.state.published_version => bail!(
                "the broker holds site version {}, which this state ({}, at version {}) did not publish: another copy of \
                 the site state published since, or this one was restored from a backup. Nothing was published; \
                 continue from the newest copy of {}",
                m.version,
                state_path(&self.path).display(),
                self.state.site.version,
                state_path(&self.path).display()
            ),
            Some(_) => Ok(()),
            None => {
                eprintln!("warning: the broker's manifest is not signed by this site's key: publishing over it");
                Ok(())
            }
        }
    }

    fn person_id(&self, name: &str) -> Result<String> {
        self.state
            .site
            .people
            .iter()
            .find(|(_, r)| r.name == name)
            .map(|(id, _)| id.clone())
            .with_context(|| format!("nobody named {name:?} in site {}", self.config.name))
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    Ok(facegate_core::hex(&b))
}

/// `site …`.
#[derive(Subcommand)]
pub enum SiteAction {
    /// Create the site file (keys made here; mode 0600) and an empty site.
    Init(InitArgs),
    /// Which doors are sent each person's record: `admitted` (the default:
    /// only the doors that admit one of their groups; elsewhere they are
    /// strangers, `unknown`) or `everyone` (every door knows every person and
    /// logs a refused one by name, `denied-group`). Without a value, prints it.
    DoorsKnow {
        /// `admitted` or `everyone`.
        who: Option<DoorsKnow>,
    },
}

/// `site init`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// The site's name (letters, digits, '-', '_', '.').
    #[arg(long)]
    name: String,
    /// The broker: mqtts://host:port.
    #[arg(long)]
    broker: String,
    /// PEM of the broker's CA (default: the system's roots).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The administrator's broker login.
    #[arg(long)]
    username: String,
    /// Its password.
    #[arg(long, env = "FACEGATE_SITE_PASSWORD")]
    password: String,
    /// IANA time zone the schedules are read in.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
}

/// `door …`.
#[derive(Subcommand)]
pub enum DoorAction {
    /// Add (or change) a door: the groups it lets in, its schedule. Its
    /// secrets go to the door over its serial link (`--port`, the door in
    /// setup mode and paired with this host) or to a file (`--secrets-out`).
    Add {
        /// The door's name.
        name: String,
        /// Groups it lets in (repeat or comma-separate).
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// When it lets anybody in (a schedule's name; default: always).
        #[arg(long)]
        schedule: Option<String>,
        /// The door's own broker login.
        #[arg(long)]
        username: String,
        /// Its password.
        #[arg(long)]
        password: String,
        /// Where to write the door's secrets (`paths.fleet_secrets` on the door), instead of `--port`.
        #[arg(long)]
        secrets_out: Option<PathBuf>,
    },
    /// Change which groups a door lets in, and when (its login and secrets stay).
    Set {
        /// The door's name.
        name: String,
        /// Groups it lets in (repeat or comma-separate; none: nobody).
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// When it lets anybody in (a schedule's name; default: always).
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Remove a door from the site.
    Remove {
        /// The door's name.
        name: String,
    },
}

/// `group …`.
#[derive(Subcommand)]
pub enum GroupAction {
    /// Add (or change) an access group.
    Add {
        /// The group's name.
        name: String,
        /// When its members pass (a schedule's name; default: always).
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Remove a group (doors and people lose it).
    Remove {
        /// The group's name.
        name: String,
    },
}

/// `schedule …`.
#[derive(Subcommand)]
pub enum ScheduleAction {
    /// Set a weekly schedule: windows like "mon-fri 07:00-19:00", "sat 09:00-13:00".
    Set {
        /// The schedule's name.
        name: String,
        /// Its windows.
        #[arg(required = true)]
        windows: Vec<String>,
    },
    /// Remove a schedule (nothing may use it).
    Remove {
        /// The schedule's name.
        name: String,
    },
}

/// `site init`.
/// `site init`, `site doors-know`.
pub fn site(g: &Global, site: &Path, action: SiteAction) -> Result<()> {
    match action {
        SiteAction::Init(args) => init(g, site, args),
        SiteAction::DoorsKnow { who: None } => {
            let know = SiteHome::open(site)?.doors_know();
            if g.json {
                print_json(&json!({"doors_know": know.as_str()}));
            } else {
                println!("{}", know.as_str());
            }
            Ok(())
        }
        SiteAction::DoorsKnow { who: Some(who) } => doors_know(g, site, who),
    }
}

/// `site doors-know WHO`: a new version whose records are sealed for the
/// doors `know` says (a door sent fewer records forgets the others).
pub fn doors_know(g: &Global, site: &Path, know: DoorsKnow) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    if home.state.settings.doors_know == know {
        if !g.json {
            println!("doors already know {}", know.as_str());
        }
        return Ok(());
    }
    home.state.settings.doors_know = know;
    home.commit(g, format!("site doors-know {}", know.as_str()))
}

fn init(g: &Global, site: &Path, args: InitArgs) -> Result<()> {
    let InitArgs { name, broker, ca, username, password, time_zone } = args;
    if site.exists() {
        bail!("{} exists: a site is made once (its keys are in it)", site.display());
    }
    facegate_site::Topics::new(&name)?;
    let rules = Rules { time_zone, ..Rules::default() };
    rules.validate()?;
    let config = SiteConfig {
        name: name.clone(),
        broker,
        ca_file: ca.map(|p| p.display().to_string()).unwrap_or_default(),
        username,
        password,
        admin_key: facegate_core::hex(&AdminKey::generate()?.to_bytes()),
        data_key: facegate_core::hex(&DataKey::generate()?.to_bytes()),
        console_password: String::new(),
    };
    let model = facegate_face::Embedder::model_id_of(&g.models()?, g.network(), facegate_face::Precision::Int8)?;
    let state = AdminState::new(SiteState { name, version: 0, model, rules, people: BTreeMap::new() });
    let home = SiteHome::create(site, config, state)?;
    println!("site {} created in {} (keep it private: it holds the site's keys)", home.config.name, site.display());
    Ok(())
}

/// A site named `bench` for the console's benchmark, on `broker` (its
/// `admin` login, password `pw-admin`): `people` people with three
/// synthetic templates each, all in group `staff`, which every door of
/// `doors` admits. Nothing is published.
pub fn create_bench_site(
    g: &Global,
    path: &Path,
    broker: &facegate_localbroker::broker::Broker,
    doors: &[String],
    people: usize,
) -> Result<()> {
    let data = DataKey::generate()?;
    let config = SiteConfig {
        name: "bench".into(),
        broker: broker.url(),
        ca_file: broker.ca.display().to_string(),
        username: "admin".into(),
        password: "pw-admin".into(),
        admin_key: facegate_core::hex(&AdminKey::generate()?.to_bytes()),
        data_key: facegate_core::hex(&data.to_bytes()),
        console_password: String::new(),
    };
    let mut rules = Rules { time_zone: "UTC".into(), ..Rules::default() };
    rules.groups.insert("staff".into(), Group::default());
    for d in doors {
        rules.doors.insert(d.clone(), Door { groups: ["staff".to_string()].into(), schedule: None });
    }
    let access = Access { groups: ["staff".to_string()].into(), ..Access::default() };
    let mut everyone = BTreeMap::new();
    for p in 0..people {
        // Unit vectors spread by a sine of the person and template: distinct, not faces.
        let templates: Vec<facegate_core::Embedding> = (0..3)
            .map(|k| {
                let v: [f32; 128] = std::array::from_fn(|i| ((i * 31 + p * 7 + k * 3) as f32 * 0.37).sin());
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.map(|x| x / norm)
            })
            .collect();
        let id = format!("p-{p:06}");
        everyone.insert(id.clone(), PersonRecord::new("bench", &id, &format!("Person {p}"), access.clone(), &templates, &data)?);
    }
    let model = facegate_face::Embedder::model_id_of(&g.models()?, g.network(), Precision::Int8)?;
    let state = AdminState::new(SiteState { name: "bench".into(), version: 1, model, rules, people: everyone });
    SiteHome::create(path, config, state)?;
    Ok(())
}

/// `door add|set|remove`.
pub fn door(g: &Global, site: &Path, action: DoorAction) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let what = match &action {
        DoorAction::Add { name, groups, schedule, .. } | DoorAction::Set { name, groups, schedule } => {
            let verb = if matches!(action, DoorAction::Add { .. }) { "add" } else { "set" };
            format!("door {verb} {name} (groups {}; schedule {})", groups.join(", "), schedule.as_deref().unwrap_or("always"))
        }
        DoorAction::Remove { name } => format!("door remove {name}"),
    };
    match action {
        DoorAction::Add { name, groups, schedule, username, password, secrets_out } => {
            // The door's own key: it opens the records of the people it admits, no others.
            let door_key = match home.state.door_keys.get(&name) {
                Some(key) => key.clone(),
                None => facegate_core::hex(&DataKey::generate()?.to_bytes()),
            };
            home.state.door_keys.insert(name.clone(), door_key.clone());
            let secrets = DoorSecrets {
                site: home.config.name.clone(),
                door: name.clone(),
                site_public_key: facegate_core::hex(&home.config.admin()?.public().to_bytes()),
                data_key: door_key,
                username: username.clone(),
                password,
                // The version that adds the door: nothing older is applied there.
                min_version: home.state.site.version + 1,
            };
            DoorSecrets::from_toml(&secrets.to_toml())?;
            if let Some((other, _)) = home.state.accounts.iter().find(|(d, u)| **u == username && **d != name) {
                bail!("door {other:?} has the broker login {username:?}: give each door its own");
            }
            home.state.accounts.insert(name.clone(), username);
            if secrets_out.is_none() && g.port.is_none() {
                bail!("give the door's serial port (--port, the door in setup mode) or --secrets-out FILE");
            }
            let groups = groups.into_iter().filter(|g| !g.is_empty()).collect();
            home.state.site.rules.doors.insert(name.clone(), Door { groups, schedule });
            home.state.site.rules.validate()?;
            if let Some(out) = &secrets_out {
                facegate_store::atomic::replace_private(out, secrets.to_toml().as_bytes())
                    .with_context(|| format!("writing {}", out.display()))?;
                if !g.json {
                    println!(
                        "door {name}: its secrets are in {} (copy them to the door's paths.fleet_secrets, mode 0600)",
                        out.display()
                    );
                }
            }
            if let Some(port) = &g.port {
                join_over_serial(g, port, &home.config, &secrets)?;
            }
        }
        DoorAction::Set { name, groups, schedule } => {
            let Some(door) = home.state.site.rules.doors.get_mut(&name) else { bail!("no door named {name:?}") };
            *door = Door { groups: groups.into_iter().filter(|g| !g.is_empty()).collect(), schedule };
        }
        DoorAction::Remove { name } => {
            if home.state.site.rules.doors.remove(&name).is_none() {
                bail!("no door named {name:?}");
            }
            // Added again, it gets a new key.
            home.state.door_keys.remove(&name);
            if let Some(user) = home.state.accounts.remove(&name) {
                home.commit(g, what)?;
                // The broker is not ours to change: say exactly what revokes the login.
                println!(
                    "door {name} removed. Revoke its broker login {user:?} now: `mosquitto_passwd -D PASSWORD_FILE {user}`, \
                     then `host-tool --site {} acl --out ACL_FILE` and reload the broker (`kill -HUP $(pidof mosquitto)`)",
                    site.display()
                );
                return Ok(());
            }
        }
    }
    home.commit(g, what)
}

/// `acl [--out FILE]`: the broker's ACL for this site (mosquitto's
/// `acl_file` format): the administrator writes the site; each door reads
/// the site's manifest and records and its own resend requests, and writes
/// only its own status and events. Removed doors are not in it.
pub fn acl(g: &Global, site: &Path, out: Option<&Path>) -> Result<()> {
    let home = SiteHome::open(site)?;
    let text = acl_text(&home.config, &home.state);
    let missing: Vec<&String> = home.state.site.rules.doors.keys().filter(|d| !home.state.accounts.contains_key(*d)).collect();
    if !missing.is_empty() {
        eprintln!("warning: the broker logins of doors {missing:?} are not known (added before they were kept): add them again with `door add`");
    }
    match out {
        Some(path) => {
            facegate_store::atomic::replace(path, text.as_bytes(), true)
                .with_context(|| format!("writing {}", path.display()))?;
            if !g.json {
                println!("ACL for site {} written to {}: reload the broker", home.config.name, path.display());
            }
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn acl_text(config: &SiteConfig, state: &AdminState) -> String {
    let base = format!("facegate/{}", config.name);
    let mut text = format!(
        "# The broker ACL of facegate site {name} (mosquitto acl_file), from `host-tool --site SITE.toml acl`.\n\
         # Anything not granted here is denied.\n\nuser {admin}\ntopic readwrite {base}/#\n",
        name = config.name,
        admin = config.username
    );
    for (door, user) in &state.accounts {
        text += &format!(
            "\n# door {door}\nuser {user}\ntopic read {base}/manifest\ntopic read {base}/people/+\n\
             topic write {base}/doors/{door}/status\ntopic readwrite {base}/doors/{door}/events\ntopic read {base}/doors/{door}/resend\n"
        );
    }
    text
}

/// Hands `secrets` to the door on `port` (paired, in setup mode) with the
/// broker and its CA; the door turns its link on and follows the site from
/// its next start.
fn join_over_serial(g: &Global, port: &str, config: &SiteConfig, secrets: &DoorSecrets) -> Result<()> {
    let ca_pem = match config.ca_file.as_str() {
        "" => String::new(),
        f => std::fs::read_to_string(f).with_context(|| format!("reading the broker's CA {f}"))?,
    };
    let mut door = crate::target::connect_paired(port, g.baud, g.timeout)?;
    let request = facegate_protocol::Request::FleetJoin { secrets: secrets.to_toml(), broker: config.broker.clone(), ca_pem };
    door.call(&request)
        .map_err(crate::output::client_error)
        .with_context(|| format!("handing the site's secrets to the door on {port}"))?;
    if !g.json {
        println!("door {} on {port} joined site {}: restart it to follow the site", secrets.door, config.name);
    }
    Ok(())
}

/// `group add|remove`.
pub fn group(g: &Global, site: &Path, action: GroupAction) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let what = match &action {
        GroupAction::Add { name, schedule } => format!("group add {name} (schedule {})", schedule.as_deref().unwrap_or("always")),
        GroupAction::Remove { name } => format!("group remove {name}"),
    };
    let s = &mut home.state.site;
    match action {
        GroupAction::Add { name, schedule } => {
            s.rules.groups.insert(name, Group { schedule });
        }
        GroupAction::Remove { name } => {
            if s.rules.groups.remove(&name).is_none() {
                bail!("no group named {name:?}");
            }
            s.rules.doors.values_mut().for_each(|d| {
                d.groups.remove(&name);
            });
            // Changed records are signed and sent again.
            s.people.values_mut().for_each(|r| {
                r.access.groups.remove(&name);
            });
        }
    }
    home.commit(g, what)
}

/// `schedule set|remove`.
pub fn schedule(g: &Global, site: &Path, action: ScheduleAction) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let what = match &action {
        ScheduleAction::Set { name, windows } => format!("schedule set {name} ({})", windows.join(", ")),
        ScheduleAction::Remove { name } => format!("schedule remove {name}"),
    };
    match action {
        ScheduleAction::Set { name, windows } => {
            let windows = windows.iter().map(|w| w.parse()).collect::<Result<_, _>>()?;
            home.state.site.rules.schedules.insert(name, Schedule { windows });
        }
        ScheduleAction::Remove { name } => {
            if home.state.site.rules.schedules.remove(&name).is_none() {
                bail!("no schedule named {name:?}");
            }
        }
    }
    home.commit(g, what)
}

/// `grant NAME GROUP`.
pub fn grant(g: &Global, site: &Path, name: &str, group: &str) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    if !home.state.site.rules.groups.contains_key(group) {
        bail!("no group named {group:?} (add it with `group add {group}`)");
    }
    let id = home.person_id(name)?;
    let record = home.state.site.people.get_mut(&id).expect("found");
    if !record.access.groups.insert(group.to_string()) && !g.json {
        println!("{name} is already in {group}");
    }
    home.commit(g, format!("grant {name} {group}"))
}

/// `revoke NAME GROUP`: the person leaves the group (the doors that admit
/// them through it only refuse them from the next version on).
pub fn revoke(g: &Global, site: &Path, name: &str, group: &str) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let id = home.person_id(name)?;
    let record = home.state.site.people.get_mut(&id).expect("found");
    if !record.access.groups.remove(group) {
        bail!("{name} is not in group {group:?}; nothing was changed");
    }
    home.commit(g, format!("revoke {name} {group}"))
}

/// `valid NAME [--from T] [--until T]`: when the person may pass (a time
/// left out, or given as `-`, is no limit).
pub fn valid(g: &Global, site: &Path, name: &str, from: Option<String>, until: Option<String>) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let id = home.person_id(name)?;
    let limit = |what: &str, t: Option<String>| parse_time(what, &t.filter(|t| !t.trim().is_empty() && t.trim() != "-"));
    let (valid_from, valid_until) = (limit("--from", from)?, limit("--until", until)?);
    if let (Some(a), Some(b)) = (valid_from, valid_until) {
        if a >= b {
            bail!("--from must come before --until; nothing was changed");
        }
    }
    let access = &mut home.state.site.people.get_mut(&id).expect("found").access;
    (access.valid_from, access.valid_until) = (valid_from, valid_until);
    let shown = |t: Option<i64>| t.map_or("-".to_string(), |s| facegate_store::access_log::iso_time(s * 1000));
    home.commit(g, format!("valid {name} from {} until {}", shown(valid_from), shown(valid_until)))
}

/// When a person may pass, as given on the command line.
pub struct Validity {
    /// Groups.
    pub groups: Vec<String>,
    /// Not before (ISO 8601 UTC, e.g. 2026-12-01T08:00).
    pub from: Option<String>,
    /// Not from (ISO 8601 UTC).
    pub until: Option<String>,
}

fn parse_time(what: &str, text: &Option<String>) -> Result<Option<i64>> {
    text.as_deref()
        .map(|t| {
            facegate_store::access_log::parse_iso_time(t)
                .map(|ms| ms / 1000)
                .with_context(|| format!("{what} {t:?}: use e.g. 2026-12-01T08:00 (UTC) or 2026-12-01T09:00+01:00"))
        })
        .transpose()
}

/// `enroll NAME PHOTO…` to the site.
pub fn enroll(g: &Global, site: &Path, name: &str, photos: &[PathBuf], validity: Validity) -> Result<()> {
    let enrolled = enrol_person(g, site, name, photos, validity)?;
    if g.json {
        print_json(&enrolled);
    } else {
        let also: String = enrolled["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .skip(1)
            .map(|n| format!(", {} of {}", n["templates"], n["network"].as_str().unwrap_or("-")))
            .collect();
        println!(
            "enrolled {name} ({} templates{also}) in site {}",
            enrolled["templates"],
            enrolled["site"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Enrols `name` from `photos` into the site (every network it holds),
/// saves and publishes: what was enrolled (`name`, `id`, `site`, `templates`,
/// `networks`, `version`, and each photo's verdict in `photos`). No usable
/// photo: an error naming each photo's reason, and nothing changed.
pub fn enrol_person(g: &Global, site: &Path, name: &str, photos: &[PathBuf], validity: Validity) -> Result<Value> {
    let mut home = SiteHome::open(site)?;
    if photos.is_empty() {
        bail!("give at least one photo (three or more, in different light, make the best templates)");
    }
    let data = home.config.data()?;
    // The site's network (whatever --network says: it is the one every person has).
    let pipeline = crate::cmd::pipeline_asked(g, home.state.site.model, None)?;
    let (templates, report) = crate::cmd::templates_from_photos(g, &pipeline, photos)?;
    if templates.is_empty() {
        let reasons: Vec<String> = report
            .iter()
            .map(|r| {
                let photo = Path::new(r["photo"].as_str().unwrap_or_default()).file_name().unwrap_or_default().to_string_lossy();
                format!("{photo}: {}", r["reason"].as_str().unwrap_or("refused"))
            })
            .collect();
        bail!("no usable photo of {name} ({}); nothing was enrolled", reasons.join("; "));
    }
    // Then every other network the site holds, and the one(s) asked for.
    let mut others = Vec::new();
    for network in other_networks_to_enrol(g, &home, &data, pipeline.embedder.network())? {
        let (model, templates) = crate::cmd::network_templates(g, network, Precision::Int8, name, photos)?;
        others.push(facegate_site::NetworkTemplates { model, templates });
    }
    let groups: BTreeSet<String> = validity.groups.into_iter().filter(|g| !g.is_empty()).collect();
    if let Some(unknown) = groups.iter().find(|g| !home.state.site.rules.groups.contains_key(*g)) {
        bail!("no group named {unknown:?} (add it with `group add {unknown}`)");
    }
    let access = Access {
        groups,
        valid_from: parse_time("--from", &validity.from)?,
        valid_until: parse_time("--until", &validity.until)?,
    };
    let id = match home.person_id(name) {
        Ok(id) => id,
        Err(_) => format!("p-{}", random_hex(8)?),
    };
    let record = PersonRecord::with_others(&home.config.name, &id, name, access, &templates, &others, &data)?;
    home.state.site.people.insert(id.clone(), record);
    let groups: Vec<&str> = home.state.site.people[&id].access.groups.iter().map(String::as_str).collect();
    let what = format!("enroll {name} ({} photos, {} templates; groups {})", photos.len(), templates.len(), groups.join(", "));
    home.commit(g, what)?;
    let networks: Vec<Value> = std::iter::once((pipeline.embedder.network().to_string(), templates.len()))
        .chain(others.iter().map(|o| (network_name(g, o.model), o.templates.len())))
        .map(|(network, n)| json!({"network": network, "templates": n}))
        .collect();
    Ok(json!({"name": name, "id": id, "site": home.config.name, "templates": templates.len(), "networks": networks,
        "version": home.state.site.version, "photos": report}))
}

/// The networks besides the site's own (`own`) a new enrolment makes
/// templates of: every one the site already holds, so that a door running
/// it finds the newcomer, and the one asked for (`--network`, or both).
fn other_networks_to_enrol(g: &Global, home: &SiteHome, data: &DataKey, own: Network) -> Result<Vec<Network>> {
    let models = g.models()?;
    let mut networks = Vec::new();
    for (model, _) in home.state.site.networks(data)?.into_iter().skip(1) {
        match facegate_face::Embedder::find_model(&models, model)? {
            Some((network, _)) => networks.push(network),
            None => bail!(
                "the site holds templates of model {model}, which no model file in {} makes: a newcomer would be missing \
                 from the doors that run it (use the host-tool release that matches the doors, or --models)",
                models.display()
            ),
        }
    }
    let asked = if g.both_networks { Some(own.other()) } else { g.network.filter(|n| *n != own) };
    networks.extend(asked.filter(|n| !networks.contains(n)));
    Ok(networks)
}

/// The name of the network that made `model`, or its id when no model file here makes it.
fn network_name(g: &Global, model: ModelId) -> String {
    let found = g.models().ok().and_then(|dir| facegate_face::Embedder::find_model(&dir, model).ok().flatten());
    found.map_or_else(|| model.to_string(), |(network, _)| network.to_string())
}

/// `networks [use NAME]`.
#[derive(Subcommand)]
pub enum NetworksAction {
    /// Make NAME the site's network (every person must have its templates):
    /// new doors and enrolments start from it. Doors running the former one
    /// keep working with its templates.
    Use {
        /// dlib or sface.
        #[arg(value_name = "NETWORK")]
        name: Network,
    },
}

/// `networks`: the site's networks and who has templates of each; `networks
/// use NAME` makes NAME the site's own.
pub fn networks(g: &Global, site: &Path, action: Option<NetworksAction>) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let data = home.config.data()?;
    let held = home.state.site.networks(&data)?;
    let everybody = home.state.site.people.len();
    let Some(NetworksAction::Use { name: network }) = action else {
        let rows: Vec<Value> = held
            .iter()
            .enumerate()
            .map(|(k, (model, ids))| {
                let missing: Vec<&str> =
                    home.state.site.people.iter().filter(|(id, _)| !ids.contains(id)).map(|(_, r)| r.name.as_str()).collect();
                json!({"network": network_name(g, *model), "model": model.to_string(), "site": k == 0,
                    "people": ids.len(), "missing": missing})
            })
            .collect();
        if g.json {
            print_json(&json!({"people": everybody, "networks": rows}));
        } else {
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r["network"].as_str().unwrap_or("-").to_string(),
                        if r["site"] == true { "the site's".into() } else { String::new() },
                        format!("{} of {everybody}", r["people"]),
                    ]
                })
                .collect();
            print!("{}", table(&["network", "", "people with templates"], &lines));
        }
        return Ok(());
    };
    let found = |model: &ModelId| network_name(g, *model) == network.to_string();
    let Some(at) = held.iter().position(|(model, _)| found(model)) else {
        bail!(
            "nobody in site {} has templates of the {network} network: enrol people with it first (`--network both enroll \
             NAME PHOTO…`)",
            home.config.name
        );
    };
    if at == 0 {
        println!("{network} is already the network of site {}", home.config.name);
        return Ok(());
    }
    let (model, ids) = &held[at];
    let missing: Vec<&str> =
        home.state.site.people.iter().filter(|(id, _)| !ids.contains(id)).map(|(_, r)| r.name.as_str()).collect();
    if !missing.is_empty() {
        bail!(
            "{} of {everybody} people have no templates of the {network} network ({}{}): enrol them again with \
             `--network both enroll NAME PHOTO…`; nothing was changed",
            missing.len(),
            missing.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            if missing.len() > 5 { ", …" } else { "" }
        );
    }
    let (old, model, name) = (home.state.site.model, *model, home.config.name.clone());
    for record in home.state.site.people.values_mut() {
        let (own, others) = record.all_templates(&name, &data)?;
        let (taken, mut rest): (Vec<_>, Vec<_>) = others.into_iter().partition(|o| o.model == model);
        rest.insert(0, facegate_site::NetworkTemplates { model: old, templates: own });
        let templates = &taken.first().expect("everyone has them").templates;
        *record = PersonRecord::with_others(&name, &record.id, &record.name, record.access.clone(), templates, &rest, &data)?;
    }
    home.state.site.model = model;
    home.commit(g, format!("networks use {network}"))?;
    if !g.json {
        println!("site {name} now runs the {network} network (version {})", home.state.site.version);
    }
    Ok(())
}

/// `remove NAME` from the site.
pub fn remove(g: &Global, site: &Path, name: &str) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let id = home.person_id(name)?;
    home.state.site.people.remove(&id);
    home.commit(g, format!("remove {name}"))
}

/// `rename FROM TO` in the site.
pub fn rename(g: &Global, site: &Path, from: &str, to: &str) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    if home.person_id(to).is_ok() {
        bail!("{to:?} is already in site {}", home.config.name);
    }
    let id = home.person_id(from)?;
    home.state.site.people.get_mut(&id).expect("found").name = to.to_string();
    home.commit(g, format!("rename {from} {to}"))
}

/// `sync [--wait]`: publishes what the broker lacks (read from its retained
/// records, so a broker that lost data is repaired); with `wait`, returns
/// when every door has applied the current version.
pub fn sync(g: &Global, site: &Path, wait: bool, wait_s: u64, reissue: bool) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    if reissue {
        home.commit(g, "sync --reissue".into())?;
    }
    home.republish(g)?;
    if !wait {
        return Ok(());
    }
    let version = home.state.site.version;
    let manifest = home.state.published.get(&home.state.manifest_topic()).map(|d| facegate_core::hex(d));
    let doors: Vec<String> = home.state.site.rules.doors.keys().cloned().collect();
    let mut link = broker::Link::connect(&home.config, "sync", true)?;
    let started = std::time::Instant::now();
    let statuses = link.wait_for_doors(&doors, version, manifest.as_deref(), Duration::from_secs(wait_s), g.json)?;
    // A door at this version holds this very manifest; one beyond it means this state is stale.
    let ahead: Vec<&String> =
        doors.iter().filter(|d| statuses.get(*d).and_then(|s| s["version"].as_u64()) > Some(version)).collect();
    if !ahead.is_empty() {
        bail!(
            "doors {ahead:?} hold a site version newer than this state's ({version}): another copy of the site state \
             published since, or this one was restored from a backup"
        );
    }
    let behind: Vec<&String> =
        doors.iter().filter(|d| !statuses.get(*d).is_some_and(|s| broker::holds(s, version, manifest.as_deref()))).collect();
    if g.json {
        print_json(&json!({"version": version, "doors": statuses, "behind": behind, "seconds": started.elapsed().as_secs_f64()}));
    }
    if !behind.is_empty() {
        bail!("{} of {} doors have not applied version {version} within {wait_s} s: {behind:?}", behind.len(), doors.len());
    }
    if !g.json {
        println!("every door ({}) applied version {version} in {:.1} s", doors.len(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `doors`: each door's last status.
pub fn doors(g: &Global, site: &Path) -> Result<()> {
    let home = SiteHome::open(site)?;
    let doors: Vec<String> = home.state.site.rules.doors.keys().cloned().collect();
    let mut link = broker::Link::connect(&home.config, "doors", true)?;
    let statuses = link.statuses(&doors, Duration::from_secs(2))?;
    if g.json {
        print_json(&json!({"version": home.state.site.version, "doors": statuses}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = doors
        .iter()
        .map(|d| match statuses.get(d) {
            Some(s) => vec![
                d.clone(),
                if s["online"] == true { "online".into() } else { "offline".into() },
                s["version"].as_u64().map_or("-".into(), |v| v.to_string()),
                s["model"].as_str().and_then(|m| ModelId::from_hex(m).ok()).map_or("-".into(), |m| network_name(g, m)),
                match (s["people"].as_u64(), s["without_templates"].as_u64().unwrap_or(0)) {
                    (Some(n), 0) => n.to_string(),
                    (Some(n), without) => format!("{n} ({without} without its network's templates)"),
                    (None, _) => "-".into(),
                },
                s["time"].as_str().unwrap_or("-").to_string(),
                s["error"].as_str().unwrap_or("").to_string(),
            ],
            None => vec![d.clone(), "never seen".into(), "-".into(), "-".into(), "-".into(), "-".into(), String::new()],
        })
        .collect();
    println!("site {} version {}", home.config.name, home.state.site.version);
    print!("{}", table(&["door", "state", "version", "network", "people", "last seen", "error"], &rows));
    Ok(())
}

/// `log [--follow] [--door D] [--all]`: events of every door, each (door,
/// seq) printed once across runs (the cursors in `SITE.printed`); doors are
/// asked to send again what was not printed yet (`--all`: everything their
/// logs still hold).
pub fn log(g: &Global, site: &Path, follow: bool, door: Option<&str>, all: bool) -> Result<()> {
    let home = SiteHome::open(site)?;
    let admin = home.config.admin()?;
    let mut printed = if all { Printed::default() } else { Printed::load(site)? };
    let doors: Vec<String> = match door {
        Some(d) => vec![d.to_string()],
        None => home.state.site.rules.doors.keys().cloned().collect(),
    };
    let mut link = broker::Link::connect(&home.config, "log", false)?;
    let statuses = link.statuses(&doors, Duration::from_millis(500))?;
    link.subscribe_events(door)?;
    let newest = |d: &str| statuses.get(d).and_then(|s| s["events_last"].as_u64()).unwrap_or(0);
    let mut asked: BTreeMap<String, Instant> = BTreeMap::new();
    for d in &doors {
        let cursor = printed.door(d);
        if let Some(first) = statuses.get(d).and_then(|s| s["events_first"].as_u64()) {
            let gone = cursor.forget_before(first);
            if gone > 0 {
                eprintln!("warning: door {d}: {gone} events left its log before they were collected");
            }
        }
        if let Some(from) = cursor.missing_from(newest(d)) {
            link.ask_resend(d, from, &admin)?;
            asked.insert(d.clone(), Instant::now());
        }
    }
    let mut last_save = Instant::now();
    let mut last_new: BTreeMap<&str, Instant> = doors.iter().map(|d| (d.as_str(), Instant::now())).collect();
    let mut complete_since: Option<Instant> = None;
    loop {
        if let Some(e) = link.next_event(Duration::from_millis(100), follow)? {
            let (Some(d), Some(seq)) = (e["door"].as_str(), e["seq"].as_u64()) else { continue };
            if doors.iter().any(|x| x == d) && printed.door(d).take(seq) {
                print_event(g, &e);
                if let Some(t) = last_new.get_mut(d) {
                    *t = Instant::now();
                }
            }
        }
        // A gap that stays (later events printed, or the door's status newer): ask again.
        for d in &doors {
            let known = if follow { 0 } else { newest(d) };
            if let Some(from) = printed.door(d).missing_from(known) {
                if asked.get(d).is_none_or(|t| t.elapsed() > Duration::from_secs(3)) {
                    link.ask_resend(d, from, &admin)?;
                    asked.insert(d.clone(), Instant::now());
                }
            }
        }
        if follow {
            if last_save.elapsed() > Duration::from_secs(2) {
                printed.save(site)?;
                last_save = Instant::now();
            }
            continue;
        }
        // Done once every door is printed up to its newest (or sent nothing new for 4 s), for a second.
        let done = doors
            .iter()
            .all(|d| printed.door(d).printed_to(newest(d)) || last_new[d.as_str()].elapsed() > Duration::from_secs(4));
        complete_since = if done { complete_since.or(Some(Instant::now())) } else { None };
        if complete_since.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
            break;
        }
    }
    printed.save(site)?;
    for d in &doors {
        if let Some(from) = printed.door(d).missing_from(newest(d)) {
            let online = statuses.get(d).is_some_and(|s| s["online"] == true);
            eprintln!(
                "note: door {d}'s events {from}..={} did not come{}",
                newest(d),
                if online { "; run log again" } else { " (the door is offline: they come when it is back)" }
            );
        }
    }
    Ok(())
}

fn print_event(g: &Global, e: &Value) {
    if g.json {
        print_json_line(e);
    } else {
        println!(
            "{}  {:<8} #{:<6} {:<16} {}",
            e["time"].as_str().unwrap_or("-"),
            e["door"].as_str().unwrap_or("?"),
            e["seq"].as_u64().unwrap_or(0),
            e["kind"].as_str().unwrap_or("?"),
            e["person"].as_str().unwrap_or("")
        );
    }
}

/// The audit log's place in the state file.
#[cfg(test)]
mod audit {
    use super::*;

    #[test]
    fn the_audit_log_travels_in_a_tail_that_older_tools_skip() {
        let model = facegate_core::ModelId::from_bytes([0x5; 32]);
        let mut state = AdminState {
            site: SiteState { name: "hq".into(), version: 3, model, rules: Rules::default(), people: BTreeMap::new() },
            published: BTreeMap::new(),
            issued_at: 1_700_000_000,
            previous: [0; 32],
            published_version: 2,
            accounts: BTreeMap::new(),
            door_keys: BTreeMap::new(),
            audit: Vec::new(),
            settings: Settings::default(),
        };
        // No change logged yet: the bytes of before.
        assert_eq!(state.to_bytes(), postcard::to_allocvec(&state).unwrap());
        state.audit.push(AuditEntry {
            at: 1_700_000_100,
            who: "console from 127.0.0.1".into(),
            what: "grant Ada staff".into(),
            version: 3,
        });
        let bytes = state.to_bytes();
        let back = AdminState::from_bytes(&bytes).unwrap();
        assert_eq!((back.audit, back.site.version), (state.audit.clone(), 3));
        let older: AdminState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((older.published_version, older.audit.len()), (2, 0), "an older tool reads the rest");
        let mut damaged = bytes.clone();
        damaged.truncate(bytes.len() - 3);
        assert!(AdminState::from_bytes(&damaged).is_err(), "a cut log is damage, not an empty log");
        // Settings follow the log, even an empty one; an older tool still reads the log.
        for audit in [Vec::new(), state.audit.clone()] {
            let with = AdminState { audit, settings: Settings { doors_know: DoorsKnow::Everyone }, ..state.clone() };
            let back = AdminState::from_bytes(&with.to_bytes()).unwrap();
            assert_eq!((back.settings, back.audit), (with.settings.clone(), with.audit.clone()));
            let older_audit: Vec<AuditEntry> =
                postcard::from_bytes(&with.to_bytes()[postcard::to_allocvec(&state).unwrap().len()..]).unwrap();
            assert_eq!(older_audit, with.audit);
        }
    }
}

/// Power cuts through the administrator's files: the site file and its
/// state (made, then saved at each version), the printed-event cursors.
#[cfg(test)]
mod power_loss {
    use super::*;
    use facegate_power_loss::{explore, reached};
    use facegate_store::disk;

    fn state(version: u64) -> AdminState {
        let model = facegate_core::ModelId::from_bytes([0x5; 32]);
        AdminState {
            site: SiteState { name: "hq".into(), version, model, rules: Rules::default(), people: BTreeMap::new() },
            published: BTreeMap::new(),
            issued_at: 1_700_000_000 + version as i64,
            previous: [0; 32],
            published_version: 0,
            accounts: BTreeMap::new(),
            door_keys: BTreeMap::new(),
            audit: Vec::new(),
            settings: Settings::default(),
        }
    }

    fn config() -> SiteConfig {
        SiteConfig {
            name: "hq".into(),
            broker: "mqtts://broker.example:8883".into(),
            ca_file: String::new(),
            username: "admin".into(),
            password: "pw".into(),
            admin_key: facegate_core::hex(&[1; 32]),
            data_key: facegate_core::hex(&[2; 32]),
            console_password: String::new(),
        }
    }

    #[test]
    fn power_loss_site_file_and_state() {
        let site = |d: &Path| d.join("hq.toml");
        let report = explore(
            "site file and state (admin)",
            |_| {},
            |dir| {
                let mut home = SiteHome::create(&site(dir), config(), state(0)).unwrap();
                disk::mark("made");
                for v in 1..=2 {
                    home.state.site.version = v;
                    home.save().unwrap();
                    disk::mark(format!("saved {v}"));
                }
            },
            |dir, marks| {
                let acked = (1..=2).filter(|v| reached(marks, &format!("saved {v}"))).max().unwrap_or(0);
                if !site(dir).exists() {
                    // No site yet: `init` may make it again.
                    return match reached(marks, "made") {
                        true => Err("the site was made and its file is gone".into()),
                        false => Ok(()),
                    };
                }
                let home = SiteHome::open(&site(dir)).map_err(|e| format!("the site does not open: {e:#}"))?;
                match home.state.site.version {
                    v if v < acked => Err(format!("version {acked} was saved, the state holds {v}")),
                    v if v > 2 => Err(format!("the state holds version {v}, never written")),
                    _ => Ok(()),
                }
            },
        )
        .finish();
        report.assert_clean();
    }

    #[test]
    fn power_loss_printed_cursors() {
        let site = |d: &Path| d.join("hq.toml");
        let report = explore(
            "printed-event cursors (admin)",
            |_| {},
            |dir| {
                let mut printed = Printed::default();
                for seq in 1..=3 {
                    printed.door("front").take(seq);
                    printed.save(&site(dir)).unwrap();
                    disk::mark(format!("printed {seq}"));
                }
            },
            |dir, marks| {
                let acked = (1..=3).filter(|s| reached(marks, &format!("printed {s}"))).max().unwrap_or(0);
                let mut printed = Printed::load(&site(dir)).map_err(|e| format!("the cursors do not load: {e:#}"))?;
                let upto = printed.door("front").upto;
                match upto >= acked && upto <= 3 {
                    true => Ok(()),
                    false => Err(format!("the cursor is at {upto} after {marks:?}")),
                }
            },
        )
        .finish();
        report.assert_clean();
    }
}
