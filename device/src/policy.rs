//! The decision policy: unlock only when enough recent frames agree.

/// Most frames a decision window can hold (`recognition.frames_window`).
pub const MAX_WINDOW: usize = 64;

/// What one frame showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// No usable face.
    NoFace,
    /// A face matched this person (gallery id) at this distance, under the threshold.
    Known {
        /// Gallery person id.
        person: u32,
        /// Distance to their nearest template.
        distance: f32,
        /// The face's live score (1 when liveness is off; 0 when it failed).
        live: f32,
    },
    /// A face matched nobody; distance to the nearest person.
    Stranger {
        /// Distance to the nearest enrolled person (infinite with an empty gallery).
        nearest: f32,
    },
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Unlock for this person.
    Grant {
        /// Gallery person id.
        person: u32,
        /// Best distance over the agreeing frames.
        distance: f32,
        /// Frames that agreed.
        frames: u16,
    },
    /// Enough frames recognised this person, but their fused live score is
    /// below the liveness threshold: a print or a screen (never unlocks).
    Spoof {
        /// Gallery person id.
        person: u32,
        /// Best distance over the agreeing frames.
        distance: f32,
        /// The agreeing frames' mean live score.
        live: f32,
        /// Frames that agreed.
        frames: u16,
    },
    /// Enough frames of a stranger: log it (never unlocks).
    Stranger {
        /// Smallest distance to anyone over those frames.
        nearest: f32,
        /// Frames used.
        frames: u16,
    },
}

/// k-of-n agreement over the faces of one approach, with a cooldown.
///
/// The window is a fixed-capacity ring ([`heapless::Deque`]): the decision
/// never allocates, however long the door runs.
pub struct Policy {
    agree: usize,
    window: heapless::Deque<Observation, MAX_WINDOW>,
    capacity: usize,
    empty_frames: usize,
    cooldown_ms: i64,
    quiet_until_ms: i64,
    /// A grant also needs the agreeing frames' mean live score at or above this (`None`: liveness off).
    pub live_threshold: Option<f32>,
}

impl Policy {
    /// Grant when `agree` of the last `window` face frames name the same
    /// person (`window` is capped at [`MAX_WINDOW`]; the config refuses more).
    pub fn new(agree: usize, window: usize, cooldown_ms: u64) -> Self {
        Policy {
            agree,
            window: heapless::Deque::new(),
            capacity: window.clamp(1, MAX_WINDOW),
            empty_frames: 0,
            cooldown_ms: cooldown_ms as i64,
            quiet_until_ms: i64::MIN,
            live_threshold: None,
        }
    }

    /// Feeds one frame's observation at time `now_ms`; allocation-free.
    pub fn observe(&mut self, obs: Observation, now_ms: i64) -> Option<Decision> {
        if obs == Observation::NoFace {
            // A whole window without a face ends the approach.
            self.empty_frames += 1;
            if self.empty_frames >= self.capacity {
                self.window.clear();
            }
            return None;
        }
        self.empty_frames = 0;
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        // Room was made above: the ring is never fuller than `capacity` ≤ MAX_WINDOW.
        let _ = self.window.push_back(obs);
        if now_ms < self.quiet_until_ms {
            return None;
        }
        // The person named most often, with their best distance and the sum of their live scores.
        let mut best: Option<(u32, usize, f32, f32)> = None;
        for o in &self.window {
            if let Observation::Known { person, .. } = o {
                let (count, dist, live) = self.window.iter().fold((0, f32::INFINITY, 0f32), |(c, d, l), x| match x {
                    Observation::Known { person: p, distance, live } if p == person => (c + 1, d.min(*distance), l + live),
                    _ => (c, d, l),
                });
                if best.is_none_or(|(_, c, _, _)| count > c) {
                    best = Some((*person, count, dist, live));
                }
            }
        }
        let decision = match best {
            Some((person, count, distance, live_sum)) if count >= self.agree => {
                // Score fusion over the approach: the mean live score of the agreeing frames.
                let live = live_sum / count as f32;
                let frames = count as u16;
                match self.live_threshold {
                    Some(t) if !facegate_face::liveness::is_live(live, t) => {
                        Some(Decision::Spoof { person, distance, live, frames })
                    }
                    _ => Some(Decision::Grant { person, distance, frames }),
                }
            }
            _ => {
                let strangers = self.window.iter().filter(|o| matches!(o, Observation::Stranger { .. })).count();
                let nearest = self.window.iter().fold(f32::INFINITY, |d, o| match o {
                    Observation::Stranger { nearest } => d.min(*nearest),
                    _ => d,
                });
                (self.window.len() == self.capacity && strangers >= self.agree)
                    .then_some(Decision::Stranger { nearest, frames: strangers as u16 })
            }
        };
        if decision.is_some() {
            self.window.clear();
            self.quiet_until_ms = now_ms + self.cooldown_ms;
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(p: u32) -> Observation {
        Observation::Known { person: p, distance: 0.4 + p as f32 / 100.0, live: 0.9 }
    }
    const STRANGER: Observation = Observation::Stranger { nearest: 0.8 };

    #[test]
    fn grants_after_k_agreeing_frames_then_cools_down() {
        let mut p = Policy::new(3, 5, 1000);
        assert_eq!(p.observe(known(1), 0), None);
        assert_eq!(p.observe(known(2), 10), None);
        assert_eq!(p.observe(known(1), 20), None);
        assert_eq!(p.observe(known(1), 30), Some(Decision::Grant { person: 1, distance: 0.41, frames: 3 }));
        for t in 40..45 {
            assert_eq!(p.observe(known(1), t), None, "cooldown");
        }
        assert!(
            matches!(p.observe(known(1), 1100), Some(Decision::Grant { .. })),
            "after the cooldown the window still held 3 agreeing frames"
        );
    }

    #[test]
    fn strangers_never_grant_and_are_reported_once_per_window() {
        let mut p = Policy::new(3, 5, 1000);
        let decisions: Vec<_> = (0..5).filter_map(|t| p.observe(STRANGER, t)).collect();
        assert_eq!(decisions, vec![Decision::Stranger { nearest: 0.8, frames: 5 }]);
        let mut p = Policy::new(3, 5, 0);
        assert!((0..100).filter_map(|t| p.observe(STRANGER, t)).all(|d| matches!(d, Decision::Stranger { .. })));
    }

    #[test]
    fn an_empty_window_ends_the_approach() {
        let mut p = Policy::new(2, 3, 0);
        assert_eq!(p.observe(known(7), 0), None);
        for t in 1..4 {
            assert_eq!(p.observe(Observation::NoFace, t), None);
        }
        assert_eq!(p.observe(known(7), 5), None, "the earlier frame was forgotten");
        assert!(matches!(p.observe(known(7), 6), Some(Decision::Grant { person: 7, frames: 2, .. })));
    }

    #[test]
    fn recognised_but_not_live_is_a_spoof_never_a_grant() {
        let at = |live| Observation::Known { person: 4, distance: 0.3, live };
        let mut p = Policy::new(3, 5, 0);
        p.live_threshold = Some(0.5);
        assert_eq!(p.observe(at(0.5), 0), None);
        assert_eq!(p.observe(at(0.0), 1), None);
        // Mean of 0.5, 0, 0.25 = 0.25 < 0.5: fused over the approach, not frame by frame.
        assert_eq!(p.observe(at(0.25), 2), Some(Decision::Spoof { person: 4, distance: 0.3, live: 0.25, frames: 3 }));
        let d: Vec<_> = (3..6).filter_map(|t| p.observe(at(0.8), t)).collect();
        assert!(matches!(d[..], [Decision::Grant { person: 4, frames: 3, .. }]), "{d:?}");
        // A failed liveness check scores 0 and NaN never passes.
        let mut p = Policy::new(1, 1, 0);
        p.live_threshold = Some(0.5);
        assert!(matches!(p.observe(at(f32::NAN), 0), Some(Decision::Spoof { .. })));
        p.live_threshold = None;
        assert!(matches!(p.observe(at(0.0), 1), Some(Decision::Grant { .. })), "liveness off");
    }
}
