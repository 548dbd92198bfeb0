//! Device configuration (TOML), with defaults and validation.

use facegate_face::{DetectorKind, Network, Precision};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;

/// Everything the device can be told; every field has a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Camera settings.
    pub camera: Camera,
    /// Recognition and decision settings.
    pub recognition: Recognition,
    /// Presentation-attack detection (prints, screens).
    pub liveness: LivenessSettings,
    /// Lock relay and door inputs.
    pub lock: Lock,
    /// Provisioning link.
    pub serial: Serial,
    /// The site link (off by default).
    pub fleet: Fleet,
    /// Where files live.
    pub paths: Paths,
}

/// The site link: with it on, the door's people and access rules come from
/// its site through an MQTT broker, and its events and status go back there.
/// The door still decides alone, from its saved copy, when the broker is away.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Fleet {
    /// Whether the door follows a site.
    pub enabled: bool,
    /// The broker: `mqtts://host:port` (TLS only: templates and credentials travel there).
    pub broker: String,
    /// PEM file of the CA that signed the broker's certificate; empty: the system's roots.
    pub ca_file: String,
    /// Seconds between keep-alive pings (the broker declares the door offline after 1.5×).
    pub keep_alive_s: u64,
    /// A site version issued longer ago than this is not applied (a replayed
    /// old site); `host-tool --site SITE.toml sync` issues the current one
    /// again. 0: no limit.
    pub max_manifest_age_days: u32,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet { enabled: false, broker: String::new(), ca_file: String::new(), keep_alive_s: 15, max_manifest_age_days: 30 }
    }
}

impl Fleet {
    /// Host and port of `broker` (`mqtts://` only).
    pub fn host_port(&self) -> anyhow::Result<(String, u16)> {
        facegate_site::mqtt::host_port(&self.broker).map_err(|e| anyhow::anyhow!("fleet.broker: {e}"))
    }
}

/// The provisioning link to the host tool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Serial {
    /// Serial device (`/dev/serial0`, `/dev/ttyUSB0`), `pty` for a pseudo-terminal, or `none`.
    pub port: String,
    /// Line rate.
    pub baud: u32,
    /// Optional setup button: held (low) at start opens pairing.
    pub setup_button_pin: Option<u8>,
    /// How long pairing stays open after start in setup mode (s).
    pub setup_window_s: u64,
}

impl Default for Serial {
    fn default() -> Self {
        Serial { port: "none".into(), baud: 115_200, setup_button_pin: None, setup_window_s: 600 }
    }
}

/// Camera settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Camera {
    /// Frame width to negotiate.
    pub width: u32,
    /// Frame height to negotiate.
    pub height: u32,
    /// Frames per second to ask for (and the replay rate; 0 = as fast as possible).
    pub fps: u32,
}

/// Recognition and decision settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Recognition {
    /// Accept a frame's match when its distance is below this; "auto": the
    /// network's measured door threshold (dlib 0.52, SFace see
    /// `Network::door_threshold`).
    pub threshold: Threshold,
    /// The embedding network: "dlib" or "sface". The gallery must hold
    /// templates of the same network (`host-tool --network … enroll`).
    #[serde(with = "network_setting")]
    pub network: Network,
    /// Ignore faces narrower than this (pixels).
    pub min_face: u32,
    /// Double the frame before detection this many times (small, far faces; HOG only).
    pub upsample: u32,
    /// The face detector: "hog" (dlib's, frontal faces) or "yunet" (a small CNN
    /// that also finds tilted and turned faces).
    pub detector: DoorDetector,
    /// "int8" (int8 weights computed in f32), "qint8" (computed in int8) or "f32".
    #[serde(with = "precision_setting")]
    pub precision: Precision,
    /// Cores the frame path uses; 0: all of the unit's.
    pub threads: usize,
    /// A trained metric (`host-tool train`): a head is applied to templates
    /// and probes; a last layer replaces the network's, and the gallery must
    /// be enrolled with it. Empty: the pretrained metric. `threshold` is then
    /// a distance in the trained metric: set it from the file (`device check`
    /// shows it).
    pub metric: String,
    /// Grant when at least `frames_agree` of the last `frames_window` frames name the same person.
    pub frames_agree: usize,
    /// Size of that window.
    pub frames_window: usize,
    /// After a decision, ignore the same outcome for this long (ms).
    pub cooldown_ms: u64,
}

/// The camera's face detector (`recognition.detector`). The names are the
/// pipeline's own; its photo-only CNN is not offered for a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DoorDetector {
    /// dlib's HOG detector: frontal faces.
    Hog,
    /// YuNet: also finds tilted and turned faces.
    Yunet,
}

impl DoorDetector {
    /// The pipeline's detector.
    pub fn kind(self) -> DetectorKind {
        match self {
            DoorDetector::Hog => DetectorKind::Hog,
            DoorDetector::Yunet => DetectorKind::Yunet,
        }
    }
}

impl<'de> Deserialize<'de> for DoorDetector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        word_setting(d, "recognition.detector", "\"hog\" or \"yunet\"", |w| match w {
            "hog" => Some(DoorDetector::Hog),
            "yunet" => Some(DoorDetector::Yunet),
            _ => None,
        })
    }
}

/// `recognition.threshold`: "auto" (the network's own) or a distance.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Threshold {
    /// The network's measured door threshold.
    #[default]
    Auto,
    /// This distance.
    Fixed(f32),
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Auto => s.serialize_str("auto"),
            Threshold::Fixed(v) => s.serialize_f32(*v),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(v) => Ok(Threshold::Fixed(v as f32)),
            Raw::Word(w) if w == "auto" => Ok(Threshold::Auto),
            Raw::Word(w) => Err(D::Error::custom(format!("recognition.threshold = {w:?} must be \"auto\" or a distance"))),
        }
    }
}

impl Recognition {
    /// The match threshold in force: the one set, else the network's own.
    pub fn threshold(&self) -> f32 {
        match self.threshold {
            Threshold::Auto => self.network.door_threshold(),
            Threshold::Fixed(v) => v,
        }
    }
}

/// `recognition.network` as its word: "dlib" or "sface".
mod network_setting {
    use super::*;

    pub fn serialize<S: Serializer>(n: &Network, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(n.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        word_setting(d, "recognition.network", "\"dlib\" or \"sface\"", |w| w.parse().ok())
    }
}

/// `recognition.precision` as its word: "int8", "qint8" or "f32".
mod precision_setting {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Precision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        word_setting(d, "recognition.precision", "\"int8\", \"qint8\" or \"f32\"", |w| w.parse().ok())
    }
}

/// Reads a setting that is one of a few words; anything else is refused
/// with a message naming `key` and the `accepted` words.
fn word_setting<'de, D: Deserializer<'de>, T>(
    d: D,
    key: &str,
    accepted: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let word = String::deserialize(d)?;
    parse(&word).ok_or_else(|| D::Error::custom(format!("{key} = {word:?} must be {accepted}")))
}

/// Whether the door checks that a face is live.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// A grant needs the agreeing frames to be live; the device does not start
    /// without the liveness models (fail closed).
    #[default]
    Required,
    /// No liveness check (a printed photo of an enrolled person opens the door).
    Off,
}

/// Presentation-attack detection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessSettings {
    /// `required` or `off`.
    pub mode: LivenessMode,
    /// A grant needs the agreeing frames' mean live score at or above this.
    pub threshold: f32,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        LivenessSettings { mode: LivenessMode::Required, threshold: facegate_face::liveness::THRESHOLD }
    }
}

impl LivenessSettings {
    /// Liveness is checked.
    pub fn required(&self) -> bool {
        self.mode == LivenessMode::Required
    }
}

/// Lock relay and door inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Lock {
    /// BCM GPIO pin driving the relay.
    pub relay_pin: u8,
    /// Relay energised (door unlocked) when the pin is high.
    pub active_high: bool,
    /// How long one unlock lasts (ms).
    pub pulse_ms: u64,
    /// Optional door contact input (closed door reads low).
    pub door_contact_pin: Option<u8>,
    /// Door open longer than this raises a door-held event (s).
    pub door_held_s: u64,
    /// Optional exit button input (pressed reads low).
    pub exit_button_pin: Option<u8>,
}

/// Where files live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Paths {
    /// Model directory.
    pub models: PathBuf,
    /// Gallery file.
    pub gallery: PathBuf,
    /// Access log file.
    pub log: PathBuf,
    /// Access log capacity (events).
    pub log_capacity: u32,
    /// Device identity and paired hosts (secrets: kept 0600).
    pub pairing: PathBuf,
    /// The site's keys and the door's broker credentials (secrets: kept 0600).
    pub fleet_secrets: PathBuf,
    /// The door's copy of its site's rules.
    pub site: PathBuf,
    /// Where the key that seals the gallery at rest comes from: "" (not
    /// sealed), "pi-otp" (the Raspberry Pi 4/5's OTP private key rows: off
    /// the SD card), or a key file (64 hex digits; worth something only off
    /// the card, e.g. on a USB key).
    pub gallery_key: String,
}

impl Default for Camera {
    fn default() -> Self {
        Camera { width: 640, height: 480, fps: 15 }
    }
}

impl Recognition {
    /// `threads` resolved: 0 means every core the process may use.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for Recognition {
    fn default() -> Self {
        Recognition {
            threshold: Threshold::Auto,
            network: Network::default(),
            min_face: 100,
            upsample: 0,
            detector: DoorDetector::Hog,
            precision: Precision::Int8,
            threads: 0,
            metric: String::new(),
            frames_agree: 3,
            frames_window: 5,
            cooldown_ms: 5000,
        }
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock { relay_pin: 17, active_high: true, pulse_ms: 3000, door_contact_pin: None, door_held_s: 30, exit_button_pin: None }
    }
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            models: PathBuf::from("/usr/share/facegate/models"),
            gallery: PathBuf::from("/var/lib/facegate/gallery.fg"),
            log: PathBuf::from("/var/lib/facegate/access.log"),
            log_capacity: facegate_store::access_log::DEFAULT_CAPACITY,
            pairing: PathBuf::from("/var/lib/facegate/pairing.fg"),
            fleet_secrets: PathBuf::from("/var/lib/facegate/fleet.toml"),
            site: PathBuf::from("/var/lib/facegate/site.fgsite"),
            gallery_key: String::new(),
        }
    }
}

impl Config {
    /// Parses TOML and validates it; errors name the offending key.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let c: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges and relations between settings.
    pub fn validate(&self) -> anyhow::Result<()> {
        let r = &self.recognition;
        let mut problems = Vec::new();
        if let Threshold::Fixed(t) = r.threshold {
            if !(t > 0.0 && t < 2.0) {
                problems.push(format!(
                    "recognition.threshold = {t} must be between 0 and 2, or \"auto\" ({} for {})",
                    r.network.door_threshold(),
                    r.network
                ));
            }
        }
        if r.frames_window == 0 || r.frames_agree == 0 || r.frames_agree > r.frames_window {
            problems.push(format!(
                "recognition.frames_agree = {} must be between 1 and recognition.frames_window = {}",
                r.frames_agree, r.frames_window
            ));
        }
        if r.frames_window > crate::policy::MAX_WINDOW {
            problems.push(format!("recognition.frames_window must be at most {}", crate::policy::MAX_WINDOW));
        }
        if r.threads > 256 {
            problems.push(format!("recognition.threads = {} must be at most 256 (0: every core)", r.threads));
        }
        if !(self.liveness.threshold >= 0.0 && self.liveness.threshold <= 1.0) {
            problems.push(format!("liveness.threshold = {} must be between 0 and 1", self.liveness.threshold));
        }
        if r.upsample > 2 {
            problems.push("recognition.upsample must be 0, 1 or 2".into());
        }
        if self.camera.width < 64 || self.camera.height < 64 || self.camera.width > 4096 || self.camera.height > 4096 {
            problems.push("camera.width and camera.height must be between 64 and 4096".into());
        }
        if self.lock.pulse_ms == 0 || self.lock.pulse_ms > 60_000 {
            problems.push("lock.pulse_ms must be between 1 and 60000".into());
        }
        let pins =
            [Some(self.lock.relay_pin), self.lock.door_contact_pin, self.lock.exit_button_pin, self.serial.setup_button_pin];
        if pins.iter().flatten().any(|p| *p > 27) {
            problems.push("GPIO pins are BCM numbers 0–27".into());
        }
        let used: Vec<u8> = pins.iter().flatten().copied().collect();
        if (1..used.len()).any(|i| used[..i].contains(&used[i])) {
            problems.push(
                "lock.relay_pin, lock.door_contact_pin, lock.exit_button_pin and serial.setup_button_pin must differ".into(),
            );
        }
        if !(1200..=4_000_000).contains(&self.serial.baud) {
            problems.push("serial.baud must be between 1200 and 4000000".into());
        }
        if self.fleet.enabled {
            if let Err(e) = self.fleet.host_port() {
                problems.push(e.to_string());
            }
            if !(1..=3600).contains(&self.fleet.keep_alive_s) {
                problems.push("fleet.keep_alive_s must be between 1 and 3600".into());
            }
        }
        if self.paths.log_capacity == 0 {
            problems.push("paths.log_capacity must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
        }
    }
}

/// Settings that the running loop picks up at once; everything else needs a restart.
pub const LIVE_KEYS: &[&str] = &[
    "recognition.threshold",
    "recognition.frames_agree",
    "recognition.frames_window",
    "recognition.cooldown_ms",
    "lock.pulse_ms",
    "lock.door_held_s",
    "liveness.threshold",
];

impl Config {
    /// Every setting as `section.key` and its TOML value, in file order.
    pub fn entries(&self) -> Vec<(String, String)> {
        let value = toml::Value::try_from(self).expect("the configuration serialises");
        let mut out = Vec::new();
        if let toml::Value::Table(sections) = value {
            for (section, table) in sections {
                if let toml::Value::Table(keys) = table {
                    out.extend(keys.into_iter().map(|(k, v)| (format!("{section}.{k}"), v.to_string())));
                }
            }
        }
        out
    }

    /// The configuration with `key` set to `value` (TOML syntax; a bare word is
    /// taken as a string), validated. `text` is the current file, whose comments
    /// and layout the returned text keeps.
    pub fn with_setting(text: &str, key: &str, value: &str) -> anyhow::Result<(Config, String)> {
        let (section, name) =
            key.split_once('.').ok_or_else(|| anyhow::anyhow!("keys look like section.key, e.g. recognition.threshold"))?;
        if !Config::default().entries().iter().any(|(k, _)| k == key) {
            anyhow::bail!("unknown setting {key:?}; `config get` lists them");
        }
        let item: toml_edit::Value = match value.parse::<toml_edit::Value>() {
            Ok(v) => v,
            Err(_) => value.into(),
        };
        let mut doc: toml_edit::DocumentMut = text.parse()?;
        if !doc.contains_table(section) {
            doc[section] = toml_edit::table();
        }
        doc[section][name] = toml_edit::Item::Value(item);
        let text = doc.to_string();
        Ok((Config::from_toml(&text)?, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_partial_files_fill_in() {
        Config::default().validate().unwrap();
        let c = Config::from_toml("[recognition]\nframes_agree = 2\n").unwrap();
        assert_eq!(c.recognition.frames_agree, 2);
        assert_eq!(c.recognition.frames_window, 5);
    }

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let text = include_str!("../facegate.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
    }

    #[test]
    fn settings_change_keeps_comments_and_is_validated() {
        let text = "# my door\n[recognition]\nthreshold = 0.5 # strict\n";
        let (c, out) = Config::with_setting(text, "recognition.frames_agree", "2").unwrap();
        assert_eq!(c.recognition.frames_agree, 2);
        assert!(out.contains("# my door") && out.contains("# strict"), "{out}");
        let (c, _) = Config::with_setting("", "serial.port", "/dev/ttyUSB0").unwrap();
        assert_eq!(c.serial.port, "/dev/ttyUSB0", "bare words are strings");
        assert!(Config::with_setting(text, "recognition.threshold", "7").is_err());
        assert!(Config::with_setting(text, "recognition.threshhold", "0.5").is_err());
        assert!(Config::with_setting(text, "threshold", "0.5").is_err());
        let keys: Vec<String> = Config::default().entries().into_iter().map(|(k, _)| k).collect();
        assert!(LIVE_KEYS.iter().all(|k| keys.iter().any(|x| x == k)));
        assert!(keys.contains(&"paths.pairing".to_string()));
    }

    #[test]
    fn the_packaged_config_is_the_defaults_with_the_pi_uart() {
        let packaged = Config::from_toml(include_str!("../debian/facegate.toml")).unwrap();
        let mut expected = Config::default();
        expected.serial.port = "/dev/serial0".into();
        assert_eq!(packaged, expected);
    }

    #[test]
    fn the_network_and_an_auto_threshold_are_settings() {
        let c = Config::from_toml("[recognition]\nnetwork = \"sface\"\n").unwrap();
        assert_eq!((c.recognition.network, c.recognition.threshold()), (Network::Sface, Network::Sface.door_threshold()));
        assert_eq!(Config::default().recognition.threshold(), Network::Sface.door_threshold(), "SFace is the default");
        let c = Config::from_toml("[recognition]\nnetwork = \"dlib\"\n").unwrap();
        assert_eq!(c.recognition.threshold(), Network::Dlib.door_threshold());
        let c = Config::from_toml("[recognition]\nnetwork = \"sface\"\nthreshold = 0.9\n").unwrap();
        assert_eq!(c.recognition.threshold(), 0.9, "a number is kept");
        let e = Config::from_toml("[recognition]\nnetwork = \"arcface\"\n").unwrap_err().to_string();
        assert!(e.contains("recognition.network") && e.contains("sface"), "{e}");
        let e = Config::from_toml("[recognition]\nthreshold = \"strict\"\n").unwrap_err().to_string();
        assert!(e.contains("auto"), "{e}");
        let (set, _) = Config::with_setting("", "recognition.network", "sface").unwrap();
        assert_eq!(set.recognition.network, Network::Sface);
        let (set, _) = Config::with_setting("[recognition]\nthreshold = 0.4\n", "recognition.threshold", "auto").unwrap();
        assert_eq!(set.recognition.threshold, Threshold::Auto);
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::from_toml("[recognition]\nframes_agree = 9\n").unwrap_err().to_string();
        assert!(e.contains("frames_agree"), "{e}");
        let e = Config::from_toml("[lock]\nrelay_pin = 4\nexit_button_pin = 4\n").unwrap_err().to_string();
        assert!(e.contains("must differ"), "{e}");
        let e = Config::from_toml("[recognition]\nthreshhold = 0.5\n").unwrap_err().to_string();
        assert!(e.contains("threshhold"), "unknown keys are refused: {e}");
        let e = Config::from_toml("[recognition]\ndetector = \"mmod\"\n").unwrap_err().to_string();
        assert!(e.contains("recognition.detector") && e.contains("yunet"), "{e}");
        assert!(Config::from_toml("[recognition]\ndetector = \"cnn\"\n").is_err(), "the photo detector is not for the camera");
        assert_eq!(Config::from_toml("[recognition]\ndetector = \"yunet\"\n").unwrap().recognition.detector, DoorDetector::Yunet);
    }

    #[test]
    fn word_settings_are_typed_with_the_same_words_and_messages() {
        // The messages name the key, the value and the accepted words, as the
        // whole-file check did when these were strings.
        let e = Config::from_toml("[recognition]\ndetector = \"mmod\"\n").unwrap_err().to_string();
        assert!(e.contains("recognition.detector = \"mmod\" must be \"hog\" or \"yunet\""), "{e}");
        let e = Config::from_toml("[recognition]\nprecision = \"int4\"\n").unwrap_err().to_string();
        assert!(e.contains("recognition.precision = \"int4\" must be \"int8\", \"qint8\" or \"f32\""), "{e}");
        assert!(e.starts_with("invalid configuration"), "{e}");
        for (word, precision) in [("int8", Precision::Int8), ("qint8", Precision::QInt8), ("f32", Precision::F32)] {
            let c = Config::from_toml(&format!("[recognition]\nprecision = \"{word}\"\n")).unwrap();
            assert_eq!(c.recognition.precision, precision);
            // `config get` shows, and `config set` writes, the same word.
            let shown = c.entries().into_iter().find(|(k, _)| k == "recognition.precision").unwrap().1;
            assert_eq!(shown, format!("\"{word}\""));
            let (set, _) = Config::with_setting("", "recognition.precision", word).unwrap();
            assert_eq!(set.recognition.precision, precision);
        }
        let (set, _) = Config::with_setting("", "recognition.detector", "yunet").unwrap();
        assert_eq!(set.recognition.detector, DoorDetector::Yunet);
        assert!(Config::with_setting("", "recognition.detector", "cnn").is_err());
    }
}
