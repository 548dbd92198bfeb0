//! What the frame loop and the provisioning server share: the gallery, the
//! events, and the commands the server sends the loop.

use crate::events::Events;
use facegate_face::enrol::EnrolProblem;
use facegate_face::Embedding;
use facegate_provision::GalleryHome;
use facegate_site::{Denial, DoorCopy};
use facegate_store::Gallery;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Instant;

/// State both threads use. The loop only ever reads the gallery; the server
/// changes it through the [`GalleryHome`] (copy, save, swap).
pub struct Shared {
    /// Enrolled people and their file.
    pub gallery: Arc<GalleryHome>,
    /// The access log and the JSON stream.
    pub events: Events,
    /// Frames read so far.
    pub frames: AtomicU64,
    /// When the device started.
    pub started: Instant,
    /// The site's rules, when the door follows a site.
    pub site: RwLock<SiteGate>,
}

/// Whether site rules apply to a recognised person.
#[derive(Debug, Clone)]
pub enum SiteGate {
    /// No site (`fleet.enabled = false`): recognised means granted.
    Off,
    /// A site door without a copy of its rules yet: nobody passes.
    Waiting,
    /// A site door's copy of its rules.
    Copy(Arc<DoorCopy>),
}

impl SiteGate {
    /// Whether the person the gallery calls `name` passes at `now` (Unix seconds).
    pub fn decide(&self, name: &str, now: i64) -> Result<(), Denial> {
        match self {
            SiteGate::Off => Ok(()),
            SiteGate::Waiting => Err(Denial::Group),
            SiteGate::Copy(copy) => copy.decide(name, now),
        }
    }
}

impl Shared {
    /// Shared state around a loaded gallery and the event outputs.
    pub fn new(gallery: Arc<GalleryHome>, events: Events) -> Self {
        Shared { gallery, events, frames: AtomicU64::new(0), started: Instant::now(), site: RwLock::new(SiteGate::Off) }
    }

    /// The gallery for reading.
    pub fn gallery(&self) -> RwLockReadGuard<'_, Gallery> {
        self.gallery.read()
    }

    /// The site rules in force.
    pub fn site(&self) -> SiteGate {
        self.site.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `gate` in force.
    pub fn set_site(&self, gate: SiteGate) {
        *self.site.write().unwrap_or_else(|p| p.into_inner()) = gate;
    }

    /// Frames so far.
    pub fn frame_count(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

/// What an enrolment capture gives back: the templates of the frames that
/// passed the enrolment policy, or why too few did.
pub type CaptureResult = Result<Vec<Embedding>, CaptureShort>;

/// A capture that ended without enough usable frames.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureShort {
    /// Usable frames seen.
    pub got: usize,
    /// Frames asked for.
    pub wanted: usize,
    /// The last reason a frame with a face was refused, if any.
    pub last_problem: Option<EnrolProblem>,
}

impl std::fmt::Display for CaptureShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "saw {} of {} usable frames", self.got, self.wanted)?;
        if let Some(p) = &self.last_problem {
            write!(f, " (last refusal: {p})")?;
        }
        Ok(())
    }
}

/// Requests from the provisioning server to the frame loop.
pub enum LoopCommand {
    /// Unlock for one pulse (already authenticated); `by` names the host.
    Unlock {
        /// The host's name.
        by: String,
    },
    /// Capture templates from the next `frames` frames that pass the enrolment policy.
    Capture {
        /// How many.
        frames: usize,
        /// Give up then.
        deadline: Instant,
        /// Where to send the result.
        reply: Sender<CaptureResult>,
    },
    /// New live settings.
    Settings(Box<crate::config::Config>),
}
