//! The lock relay and the door inputs, behind traits: GPIO on the Pi, a
//! simulation for tests and demos.
//!
//! Fail secure: the relay is energised only to unlock. Released (de-energised)
//! means locked, which is also what happens when the process or the Pi dies,
//! with the wiring in the README (fail-secure strike or maglock on the relay's
//! normally-open contact).

use crate::events::{now_ms, relay_json};
use facegate_core::print::print_json_line;
use std::sync::{Arc, Mutex};

/// A relay that unlocks the door while energised.
pub trait Relay: Send {
    /// Energise (`true`, door unlocked) or release (`false`, door locked).
    fn set_unlocked(&mut self, unlocked: bool) -> anyhow::Result<()>;
    /// Human-readable description for logs.
    fn describe(&self) -> String;
}

/// Which relay drives the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LockKind {
    /// A simulated relay that records its transitions (tests, demos, no Pi).
    Sim,
    /// The relay on `lock.relay_pin`, with the exit button and door contact pins.
    Gpio,
}

/// The relay shared between the main loop and the panic hook.
pub type SharedRelay = Arc<Mutex<Box<dyn Relay>>>;

/// One recorded relay transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// New state.
    pub unlocked: bool,
}

/// A relay that only records what it was told, with timestamps.
#[derive(Clone, Default)]
pub struct SimRelay {
    /// Every transition, oldest first (shared so tests can read it).
    pub transitions: Arc<Mutex<Vec<Transition>>>,
}

impl Relay for SimRelay {
    fn set_unlocked(&mut self, unlocked: bool) -> anyhow::Result<()> {
        self.transitions.lock().unwrap_or_else(|p| p.into_inner()).push(Transition { time_ms: now_ms(), unlocked });
        Ok(())
    }
    fn describe(&self) -> String {
        "simulated relay".into()
    }
}

/// The door's inputs: exit button and door contact.
pub trait DoorInputs {
    /// True while the exit button is pressed.
    fn exit_pressed(&mut self) -> bool;
    /// Whether the door is open; `None` without a door contact.
    fn door_open(&mut self) -> Option<bool>;
}

/// No inputs wired (simulation, or a door without them).
pub struct NoInputs;

impl DoorInputs for NoInputs {
    fn exit_pressed(&mut self) -> bool {
        false
    }
    fn door_open(&mut self) -> Option<bool> {
        None
    }
}

/// Releases the relay from a panic hook: the door locks even if the frame loop
/// panics. With `events_json`, the transition is reported like any other.
pub fn install_panic_release(relay: SharedRelay, events_json: bool) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The loop never panics while holding the relay lock, so this cannot block;
        // a poisoned lock still holds a usable relay.
        let mut guard = relay.lock().unwrap_or_else(|p| p.into_inner());
        match guard.set_unlocked(false) {
            Ok(()) if events_json => print_json_line(&relay_json(false, Some("panic"))),
            Ok(()) => {}
            Err(e) => eprintln!("PANIC and the relay could not be released: {e}"),
        }
        drop(guard);
        previous(info);
    }));
}

/// GPIO relay and inputs through rppal (Raspberry Pi).
#[cfg(target_os = "linux")]
pub mod gpio {
    use super::Relay;
    use anyhow::Context;
    use rppal::gpio::{Gpio, InputPin, Level, OutputPin};

    /// A relay on a BCM pin.
    pub struct GpioRelay {
        pin: OutputPin,
        active_high: bool,
    }

    impl GpioRelay {
        /// Claims the pin and drives it to the locked level at once.
        pub fn open(bcm: u8, active_high: bool) -> anyhow::Result<Self> {
            let gpio = Gpio::new().context("opening GPIO (is this a Raspberry Pi, and is the user in group gpio?)")?;
            let pin = gpio.get(bcm).with_context(|| format!("claiming GPIO {bcm}"))?;
            let mut pin = if active_high { pin.into_output_low() } else { pin.into_output_high() };
            // On drop the pin returns to an input: the relay driver's pull resistor keeps it released.
            pin.set_reset_on_drop(true);
            Ok(GpioRelay { pin, active_high })
        }
    }

    impl Relay for GpioRelay {
        fn set_unlocked(&mut self, unlocked: bool) -> anyhow::Result<()> {
            let high = unlocked == self.active_high;
            self.pin.write(if high { Level::High } else { Level::Low });
            Ok(())
        }
        fn describe(&self) -> String {
            format!("GPIO {} relay, active {}", self.pin.pin(), if self.active_high { "high" } else { "low" })
        }
    }

    /// Exit button and door contact to ground with internal pull-ups: a
    /// pressed button reads low; a closed door (contact closed) reads low.
    pub struct GpioInputs {
        exit: Option<InputPin>,
        contact: Option<InputPin>,
    }

    impl GpioInputs {
        /// Claims the configured pins.
        pub fn open(exit_pin: Option<u8>, contact_pin: Option<u8>) -> anyhow::Result<Self> {
            let gpio = Gpio::new()?;
            let claim = |p: Option<u8>| p.map(|p| gpio.get(p).map(|p| p.into_input_pullup())).transpose();
            Ok(GpioInputs { exit: claim(exit_pin)?, contact: claim(contact_pin)? })
        }
    }

    /// Whether a button to ground on `bcm` is held now (internal pull-up).
    pub fn button_held(bcm: u8) -> anyhow::Result<bool> {
        let pin = Gpio::new()?.get(bcm)?.into_input_pullup();
        // Let the pull-up settle before reading.
        std::thread::sleep(std::time::Duration::from_millis(5));
        Ok(pin.is_low())
    }

    impl super::DoorInputs for GpioInputs {
        fn exit_pressed(&mut self) -> bool {
            self.exit.as_ref().is_some_and(|p| p.is_low())
        }
        fn door_open(&mut self) -> Option<bool> {
            self.contact.as_ref().map(|p| p.is_high())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_relay_records_transitions_in_order() {
        let mut r = SimRelay::default();
        r.set_unlocked(false).unwrap();
        r.set_unlocked(true).unwrap();
        r.set_unlocked(false).unwrap();
        let t = r.transitions.lock().unwrap();
        assert_eq!(t.iter().map(|t| t.unlocked).collect::<Vec<_>>(), vec![false, true, false]);
        assert!(t.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    }
}
