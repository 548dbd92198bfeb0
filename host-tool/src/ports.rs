//! Serial port names as each platform spells them, and what to do when a port
//! will not open.

use std::io::ErrorKind;

/// Per platform: how a USB serial adapter is usually named, and where adapters show up.
const NAMING: (&str, &str) = if cfg!(windows) {
    ("COM3", "a USB serial adapter shows up as COM3, COM4, … (Device Manager, Ports (COM & LPT))")
} else if cfg!(target_os = "macos") {
    ("/dev/cu.usbserial-0001", "a USB serial adapter shows up as /dev/cu.usbserial-* or /dev/cu.usbmodem* (use cu.*, not tty.*)")
} else {
    ("/dev/ttyUSB0", "a USB serial adapter shows up as /dev/ttyUSB0 or /dev/ttyACM0")
};

/// How a USB serial adapter is usually named on this platform.
pub const EXAMPLE_PORT: &str = NAMING.0;

/// Where adapters show up on this platform, for messages.
pub const WHERE_ADAPTERS_APPEAR: &str = NAMING.1;

/// Why a port did not open, in the user's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenProblem {
    /// No such port.
    Missing,
    /// The user may not open it.
    Permission,
    /// Another program has it open.
    Busy,
    /// Anything else.
    Other,
}

/// Classifies a `serialport` error. Windows reports a port held by another
/// program as "access denied" (os error 5), so there it means busy.
pub fn classify(e: &serialport::Error) -> OpenProblem {
    match e.kind() {
        serialport::ErrorKind::NoDevice => OpenProblem::Missing,
        serialport::ErrorKind::Io(ErrorKind::NotFound) => OpenProblem::Missing,
        serialport::ErrorKind::Io(ErrorKind::PermissionDenied) if cfg!(windows) => OpenProblem::Busy,
        serialport::ErrorKind::Io(ErrorKind::PermissionDenied) => OpenProblem::Permission,
        serialport::ErrorKind::Io(ErrorKind::ResourceBusy) => OpenProblem::Busy,
        // The crate takes an exclusive lock (TIOCEXCL) and reports EBUSY as plain text.
        _ if e.description.contains("busy") || e.description.contains("os error 16") => OpenProblem::Busy,
        _ => OpenProblem::Other,
    }
}

/// A one-line hint for a port that did not open.
pub fn open_hint(port: &str, problem: OpenProblem) -> String {
    let looks_foreign = if cfg!(windows) { port.starts_with("/dev/") } else { port.to_ascii_uppercase().starts_with("COM") };
    let naming = if looks_foreign { format!("{port} is not a port name on this system: ") } else { String::new() };
    match problem {
        OpenProblem::Missing => format!("{naming}{WHERE_ADAPTERS_APPEAR}; `host-tool ports` lists the ports present"),
        OpenProblem::Permission => {
            if cfg!(target_os = "linux") {
                "permission denied: add yourself to the dialout group (`sudo usermod -aG dialout $USER`), then log out and in again".into()
            } else {
                "permission denied: your account may not open serial ports".into()
            }
        }
        OpenProblem::Busy => {
            format!("{port} is in use by another program (a serial monitor, another host-tool, ModemManager): close it and retry")
        }
        OpenProblem::Other => format!("{naming}`host-tool ports` lists serial ports ({WHERE_ADAPTERS_APPEAR})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::{Error, ErrorKind as Kind};

    #[test]
    fn errors_are_classified() {
        assert_eq!(classify(&Error::new(Kind::NoDevice, "gone")), OpenProblem::Missing);
        assert_eq!(classify(&Error::new(Kind::Io(ErrorKind::NotFound), "x")), OpenProblem::Missing);
        assert_eq!(classify(&Error::new(Kind::Io(ErrorKind::Other), "Device or resource busy")), OpenProblem::Busy);
        assert_eq!(classify(&Error::new(Kind::InvalidInput, "bad baud")), OpenProblem::Other);
        let denied = classify(&Error::new(Kind::Io(ErrorKind::PermissionDenied), "denied"));
        assert_eq!(denied, if cfg!(windows) { OpenProblem::Busy } else { OpenProblem::Permission });
    }

    #[test]
    fn hints_name_this_platforms_ports() {
        let missing = open_hint(EXAMPLE_PORT, OpenProblem::Missing);
        assert!(missing.contains("host-tool ports") && missing.contains(if cfg!(windows) { "COM3" } else { "/dev/" }));
        assert!(!missing.contains("not a port name"), "{missing}");
        let foreign = if cfg!(windows) { "/dev/ttyUSB0" } else { "COM3" };
        assert!(open_hint(foreign, OpenProblem::Missing).contains("not a port name on this system"));
        if cfg!(target_os = "linux") {
            assert!(open_hint("/dev/ttyUSB0", OpenProblem::Permission).contains("dialout"));
        }
        assert!(open_hint("X", OpenProblem::Busy).contains("in use"));
    }

    #[test]
    fn a_missing_port_fails_with_the_hint() {
        let port = if cfg!(windows) { "COM250" } else { "/dev/ttyUSB-facegate-test-missing" };
        let Err(e) = crate::target::open_port(port, 115_200) else { panic!("{port} opened") };
        let text = format!("{e:#}");
        assert!(text.contains(port) && text.contains("host-tool ports"), "{text}");
    }
}
