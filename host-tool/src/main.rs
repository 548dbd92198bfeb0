//! `host-tool`: provisions a facegate door unit over its serial link (or a
//! gallery file directly), and administers a site of doors. Benchmarks and
//! training (`bench …`, `train`) are the lab's (`facegate-lab`).

mod cmd;
mod console;
mod keys;
mod output;
mod ports;
mod site;
mod target;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "host-tool",
    version,
    about = "facegate host tool: pair with a door unit, enrol people, read its log, back it up; benchmarks",
    after_help = "A first session:\n  host-tool ports\n  host-tool --port /dev/ttyUSB0 pair            (device started with --setup)\n  host-tool --port /dev/ttyUSB0 enroll Ada a.jpg b.jpg c.jpg\n  host-tool --port /dev/ttyUSB0 log --follow"
)]
struct Cli {
    /// Serial port of the device: /dev/ttyUSB0 on Linux, COM3 on Windows, /dev/cu.usbserial-* on macOS (`host-tool ports` lists them).
    #[arg(long, global = true, env = "FACEGATE_PORT")]
    port: Option<String>,
    /// Line rate; must match the device's serial.baud.
    #[arg(long, global = true, default_value_t = 115_200)]
    baud: u32,
    /// Work on a gallery file instead of a device (enroll, people, remove, rename, verify, identify, backup, restore).
    #[arg(long, global = true, conflicts_with = "port")]
    gallery: Option<PathBuf>,
    /// Print JSON instead of tables and messages.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for each answer.
    #[arg(long, global = true, default_value_t = 5.0)]
    timeout: f64,
    /// Match threshold for verify and identify on a gallery file (the device
    /// uses its own setting) [default: 0.52, or the --metric file's threshold].
    #[arg(long, global = true)]
    threshold: Option<f32>,
    /// A trained metric (`host-tool train`). A head: verify and identify on a
    /// gallery file use it (a device matches with its own `recognition.metric`).
    /// A retrained last layer also makes the templates, for a gallery file or a
    /// device that runs the same file.
    #[arg(long, global = true)]
    metric: Option<PathBuf>,
    /// Directory with the model files and their MANIFEST (default: models/ beside
    /// the program, then the user's and the system's data directory).
    #[arg(long, global = true, env = "FACEGATE_MODELS")]
    models: Option<PathBuf>,
    /// The embedding network that makes templates here and runs the
    /// benchmarks: sface or dlib [default: sface]. A gallery or site of the
    /// other network's templates is refused, not mixed. `both` (enroll into a
    /// gallery file or a site): each person gets templates of both networks,
    /// so the gallery or site serves a door running either.
    #[arg(long, global = true, env = "FACEGATE_NETWORK", value_parser = parse_network)]
    network: Option<NetworkArg>,
    /// A site file (`site init`): enroll, remove, rename and log work on the
    /// whole site through its broker; door, group, schedule, grant, doors and
    /// sync need it.
    #[arg(long, global = true, env = "FACEGATE_SITE", conflicts_with = "gallery")]
    site: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List serial ports.
    Ports,
    /// Device versions, model, gallery size, uptime and main settings.
    Status,
    /// Pair this host with a device in setup mode (stores a key, mode 0600).
    Pair,
    /// Unpair: the device forgets this host, and the key is deleted.
    Unpair,
    /// Enrol a person from photos (templates are computed here), or from the device's camera.
    Enroll {
        /// Their name (unique).
        name: String,
        /// Photos of them: one face each, at least 80 px wide, sharp. Three or more are best.
        photos: Vec<PathBuf>,
        /// Let the device capture this many frames from its camera instead.
        #[arg(long, value_name = "N")]
        on_device: Option<u8>,
        /// Add the photos to someone already enrolled.
        #[arg(long)]
        add: bool,
        /// With --site: the access groups they join (repeat or comma-separate).
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// With --site: not valid before this time (RFC 3339: 2026-12-01T08:00 is UTC, or give an offset: 2026-12-01T09:00+01:00).
        #[arg(long)]
        from: Option<String>,
        /// With --site: not valid from this time on (as --from).
        #[arg(long)]
        until: Option<String>,
    },
    /// List enrolled people.
    People,
    /// Remove a person.
    Remove {
        /// The enrolled name.
        name: String,
    },
    /// Rename a person (their templates stay).
    Rename {
        /// The enrolled name.
        from: String,
        /// The name to use from now on.
        to: String,
    },
    /// 1:1: is the face in each PHOTO the person NAME? (`--json`: one object per line per photo)
    Verify {
        /// Claimed person.
        name: String,
        /// Photos (the models load once for all of them).
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// 1:K: who is the face in each PHOTO (or "not enrolled")? (`--json`: one object per line per photo)
    Identify {
        /// Photos (the models load once for all of them).
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// The device's access log (`log clear` erases it).
    Log {
        #[command(subcommand)]
        action: Option<LogAction>,
        /// Only events since a time (2026-11-28T08:00 is UTC; 2026-11-28T09:00+01:00) or for an age (30m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new events (JSON lines with --json).
        #[arg(long)]
        follow: bool,
        /// With --site: one door's events only.
        #[arg(long)]
        door: Option<String>,
        /// With --site: every event the doors' logs still hold, not only
        /// those this site file has not printed yet.
        #[arg(long)]
        all: bool,
    },
    /// Read or change the device's settings (the device validates them).
    #[command(subcommand)]
    Config(ConfigAction),
    /// Download the gallery to FILE (checksummed, written atomically).
    Backup {
        /// Where to write it.
        file: PathBuf,
    },
    /// Replace the device's gallery with FILE (checked first; atomic on the device).
    Restore {
        /// The backup.
        file: PathBuf,
    },
    /// Unlock the door for one pulse (authenticated, logged).
    Unlock,
    /// Where the models are found, and a check of every file against its MANIFEST hash.
    Models,
    /// Learn a metric on labelled photos (one folder per person) with the triplet loss.
    Train(facegate_lab::TrainArgs),
    /// Benchmarks of the face pipeline.
    #[command(subcommand)]
    Bench(facegate_lab::BenchCommand),
    /// A site of many doors: `site init`, `site doors-know`.
    #[command(subcommand)]
    Site(site::SiteAction),
    /// The site's doors: add (with its secrets file), remove.
    #[command(subcommand)]
    Door(site::DoorAction),
    /// The site's access groups.
    #[command(subcommand)]
    Group(site::GroupAction),
    /// The site's weekly schedules.
    #[command(subcommand)]
    Schedule(site::ScheduleAction),
    /// Put a person of the site in an access group.
    Grant {
        /// The person's name.
        name: String,
        /// The group.
        group: String,
    },
    /// When a person of the site may pass: from, until (UTC, or with an
    /// offset); a time left out or given as `-` is no limit.
    Valid {
        /// The person's name.
        name: String,
        /// Not before.
        #[arg(long)]
        from: Option<String>,
        /// Not from.
        #[arg(long)]
        until: Option<String>,
    },
    /// Take a person of the site out of an access group.
    Revoke {
        /// The person's name.
        name: String,
        /// The group.
        group: String,
    },
    /// The site's doors: online, applied version, last seen.
    Doors,
    /// The site's console in a browser (with --site): doors, people, access,
    /// live events. Set its password first; beyond this machine, HTTPS only.
    Console {
        /// The address to serve on; beyond loopback, HTTPS only (--tls-cert, --tls-key).
        #[arg(long, default_value = console::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Serve HTTPS with this certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Set the console's password (read from standard input when it is
        /// not a terminal, one line) and exit.
        #[arg(long)]
        set_password: bool,
    },
    /// The site console's speed: each page and a door's event on the live
    /// stream, for a site of synthetic people on a broker started here
    /// (needs mosquitto).
    BenchConsole {
        /// People in the site.
        #[arg(long, default_value_t = 1000)]
        people: usize,
        /// Doors in the site.
        #[arg(long, default_value_t = 10)]
        doors: usize,
        /// Requests per page (the median and the slowest are reported).
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// The site's embedding networks and how many people have templates of
    /// each; `networks use NAME` makes another one the site's.
    Networks {
        #[command(subcommand)]
        action: Option<site::NetworksAction>,
    },
    /// Publish the site to its broker; with --wait, until every door applied it.
    Sync {
        /// Wait until every door reports the current version.
        #[arg(long)]
        wait: bool,
        /// How long to wait (s).
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
        /// Issue the site again as a new version, unchanged but issued now
        /// (doors refuse a version issued longer ago than their
        /// `fleet.max_manifest_age_days`).
        #[arg(long)]
        reissue: bool,
    },
    /// The broker's ACL for the site (mosquitto `acl_file`): each door
    /// writes only its own status and events; only the administrator
    /// writes the site or asks doors for events again.
    Acl {
        /// Write it to this file (atomically) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LogAction {
    /// Erase the log.
    Clear,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print settings (all, or one).
    Get {
        /// `section.key`, e.g. recognition.threshold.
        key: Option<String>,
    },
    /// Change a setting.
    Set {
        /// `section.key`.
        key: String,
        /// New value.
        value: String,
    },
}

/// `--network`: one network, or both (enrolment).
#[derive(Clone, Copy)]
enum NetworkArg {
    One(facegate_face::Network),
    Both,
}

fn parse_network(s: &str) -> Result<NetworkArg, String> {
    match s {
        "both" => Ok(NetworkArg::Both),
        one => one.parse().map(NetworkArg::One).map_err(|e| format!("{e}, or both")),
    }
}

/// The `--site` file a site command needs.
fn site_file(site: &Option<PathBuf>) -> Result<&std::path::Path> {
    site.as_deref().ok_or_else(|| anyhow::anyhow!("this command works on a site: give --site SITE.toml"))
}

fn run(cli: Cli) -> Result<()> {
    let g = cmd::Global {
        port: cli.port,
        baud: cli.baud,
        json: cli.json,
        gallery: cli.gallery,
        models: cli.models,
        timeout: Duration::from_secs_f64(cli.timeout.max(0.1)),
        threshold: cli.threshold,
        metric: cli.metric,
        network: match cli.network {
            Some(NetworkArg::One(n)) => Some(n),
            _ => None,
        },
        both_networks: matches!(cli.network, Some(NetworkArg::Both)),
        actor: None,
    };
    if g.both_networks && !matches!(cli.command, Command::Enroll { .. }) {
        anyhow::bail!(
            "--network both is for enroll into a gallery file or a site (templates of both networks); other commands take \
             dlib or sface"
        );
    }
    let site = cli.site;
    let hands_secrets = matches!(cli.command, Command::Door(site::DoorAction::Add { .. }) | Command::Console { .. });
    if site.is_some() && g.port.is_some() && !hands_secrets {
        anyhow::bail!("with --site, --port is only for `door add` and `console` (handing a door its secrets)");
    }
    match cli.command {
        Command::Enroll { name, photos, groups, from, until, .. } if site.is_some() => {
            site::enroll(&g, site_file(&site)?, &name, &photos, site::Validity { groups, from, until })
        }
        Command::Remove { name } if site.is_some() => site::remove(&g, site_file(&site)?, &name),
        Command::Rename { from, to } if site.is_some() => site::rename(&g, site_file(&site)?, &from, &to),
        Command::Log { action: None, follow, door, all, since } if site.is_some() => {
            if since.is_some() {
                anyhow::bail!("--since is for one device's log; a site's log prints what was not printed yet (or --all)");
            }
            site::log(&g, site_file(&site)?, follow, door.as_deref(), all)
        }
        Command::Site(action) => site::site(&g, site_file(&site)?, action),
        Command::Door(action) => site::door(&g, site_file(&site)?, action),
        Command::Group(action) => site::group(&g, site_file(&site)?, action),
        Command::Schedule(action) => site::schedule(&g, site_file(&site)?, action),
        Command::Grant { name, group } => site::grant(&g, site_file(&site)?, &name, &group),
        Command::Revoke { name, group } => site::revoke(&g, site_file(&site)?, &name, &group),
        Command::Valid { name, from, until } => site::valid(&g, site_file(&site)?, &name, from, until),
        Command::Doors => site::doors(&g, site_file(&site)?),
        Command::Networks { action } => site::networks(&g, site_file(&site)?, action),
        Command::BenchConsole { people, doors, runs } => console::bench::run(&g, people, doors, runs),
        Command::Console { listen, tls_cert, tls_key, set_password } => {
            let serve = console::Serve { listen, tls: tls_cert.zip(tls_key) };
            console::run(&g, site_file(&site)?, serve, set_password)
        }
        Command::Sync { wait, wait_s, reissue } => site::sync(&g, site_file(&site)?, wait, wait_s, reissue),
        Command::Acl { out } => site::acl(&g, site_file(&site)?, out.as_deref()),
        Command::Ports => cmd::ports(&g),
        Command::Models => cmd::models(&g),
        Command::Status => cmd::status(&g),
        Command::Pair => cmd::pair(&g),
        Command::Unpair => cmd::unpair(&g),
        Command::Enroll { name, photos, on_device, add, groups, from, until } => {
            if !groups.is_empty() || from.is_some() || until.is_some() {
                anyhow::bail!("--group, --from and --until are for a site's people: give --site SITE.toml");
            }
            cmd::enroll(&g, &name, &photos, on_device, add)
        }
        Command::People => cmd::people(&g),
        Command::Remove { name } => cmd::remove(&g, &name),
        Command::Rename { from, to } => cmd::rename(&g, &from, &to),
        Command::Verify { name, photos } => cmd::verify(&g, &name, &photos),
        Command::Identify { photos } => cmd::identify(&g, &photos),
        Command::Log { action: Some(LogAction::Clear), .. } => cmd::log_clear(&g),
        Command::Log { action: None, since, follow, door, all } => {
            if door.is_some() || all {
                anyhow::bail!("--door and --all are for a site's log: give --site SITE.toml");
            }
            cmd::log(&g, since.as_deref(), follow)
        }
        Command::Config(ConfigAction::Get { key }) => cmd::config_get(&g, key.as_deref()),
        Command::Config(ConfigAction::Set { key, value }) => cmd::config_set(&g, &key, &value),
        Command::Backup { file } => cmd::backup(&g, &file),
        Command::Restore { file } => cmd::restore(&g, &file),
        Command::Unlock => cmd::unlock(&g),
        Command::Train(args) => facegate_lab::run_train(&g.models()?, g.network(), args),
        Command::Bench(command) => facegate_lab::run_bench(&g.models()?, g.network(), command),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::report(&e);
            ExitCode::FAILURE
        }
    }
}
