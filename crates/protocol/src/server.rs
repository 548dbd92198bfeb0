//! The device side of a session: version check, pairing, authentication and
//! replay protection, then dispatch of the request to a [`Handler`].

use crate::auth::{random_bytes, sign_response, verify_request, Secret};
use crate::frame::FrameError;
use crate::link::{Link, LinkError, Port};
use crate::message::{
    decode_request, to_bytes, DeviceHello, DeviceId, HostId, ModelId, Request, RequestFrame, Response, ResponseFrame, WireError,
};
use crate::PROTOCOL_VERSION;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Counters are persisted in steps of this much: after a restart the device
/// takes the persisted mark as the last counter seen, so an old request can
/// never be replayed, at the cost of one write per this many requests.
pub const COUNTER_STEP: u64 = 1024;

/// One paired host, as the device keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedHost {
    /// The host's id.
    pub host: HostId,
    /// Its name, for logs.
    pub name: String,
    /// The shared secret.
    pub secret: Secret,
    /// Every counter this host used so far is below this.
    pub counter_mark: u64,
}

/// The device's identity and paired hosts (kept on the device, 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairings {
    /// Device identity.
    pub device: DeviceId,
    /// Paired hosts.
    pub hosts: Vec<PairedHost>,
}

const PAIRINGS_MAGIC: &[u8; 4] = b"FGPR";

impl Pairings {
    /// A new identity with nobody paired.
    pub fn new_random() -> Self {
        Pairings { device: random_bytes(), hosts: Vec::new() }
    }

    /// File bytes: magic, CRC-32, postcard body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = to_bytes(self);
        [&PAIRINGS_MAGIC[..], &crc32fast::hash(&body).to_le_bytes(), &body].concat()
    }

    /// Parses file bytes; `None` when damaged.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 8 || &bytes[..4] != PAIRINGS_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
        (crc32fast::hash(&bytes[8..]) == crc).then(|| postcard::from_bytes(&bytes[8..]).ok()).flatten()
    }
}

/// What the device does with authenticated requests.
pub trait Handler {
    /// Software version for [`Request::Hello`].
    fn software(&self) -> String;
    /// The gallery's model id.
    fn model(&self) -> ModelId;
    /// Stores the pairings durably; an error refuses the request that needed it.
    fn save_pairings(&mut self, pairings: &Pairings) -> Result<(), WireError>;
    /// Handles an authenticated request from `host`.
    fn handle(&mut self, request: Request, host: &PairedHost) -> Result<Response, WireError>;
    /// Whether `request` changes who decides at the door, so that only a host
    /// at the device in setup mode may make it (the server refuses it with
    /// [`WireError::NotInSetupMode`] otherwise). Joining a site always does,
    /// whatever this says; a handler adds its own (settings that move the
    /// door's authority).
    fn needs_setup_mode(&self, _request: &Request) -> bool {
        false
    }
    /// A security event: pairing, unpairing, or a refused request (`error` set).
    fn security_event(&mut self, what: SecurityEvent, host_name: Option<&str>);
}

/// Security-relevant outcomes, for the access log.
#[derive(Debug, Clone, PartialEq)]
pub enum SecurityEvent {
    /// A host paired.
    Paired,
    /// A host unpaired.
    Unpaired,
    /// A request was refused.
    Refused(WireError),
}

/// A device-side session.
pub struct Server<H> {
    /// Identity and paired hosts.
    pub pairings: Pairings,
    last_counter: HashMap<HostId, u64>,
    setup_until: Option<Instant>,
    /// The request handler.
    pub handler: H,
}

impl<H: Handler> Server<H> {
    /// A server; `setup` opens pairing for that long from now.
    pub fn new(pairings: Pairings, setup: Option<Duration>, handler: H) -> Self {
        let last_counter = pairings.hosts.iter().map(|h| (h.host, h.counter_mark)).collect();
        Server { pairings, last_counter, setup_until: setup.map(|d| Instant::now() + d), handler }
    }

    /// Pairing is open now.
    pub fn in_setup_mode(&self) -> bool {
        self.setup_until.is_some_and(|t| Instant::now() < t)
    }

    fn reply(id: u32, result: &Result<Response, WireError>, sign: Option<(&Secret, u64)>) -> Vec<u8> {
        let body = to_bytes(result);
        let mac = sign.map(|(s, counter)| sign_response(s, PROTOCOL_VERSION, id, counter, &body));
        to_bytes(&ResponseFrame { version: PROTOCOL_VERSION, id, mac, body })
    }

    fn hello(&self, host: &HostId) -> Response {
        let paired = self.pairings.hosts.iter().any(|h| &h.host == host);
        Response::Hello(DeviceHello {
            device: self.pairings.device,
            software: self.handler.software(),
            model: self.handler.model(),
            paired,
            counter_floor: if paired { self.last_counter.get(host).copied().unwrap_or(0) } else { 0 },
            setup_mode: self.in_setup_mode(),
        })
    }

    fn pair(&mut self, host: HostId, name: String) -> Result<Response, WireError> {
        if !self.in_setup_mode() {
            self.handler.security_event(SecurityEvent::Refused(WireError::NotInSetupMode), Some(&name));
            return Err(WireError::NotInSetupMode);
        }
        if name.len() > 64 || name.chars().any(char::is_control) {
            return Err(WireError::InvalidName("host names are up to 64 printable bytes".into()));
        }
        let secret: Secret = random_bytes();
        let mut next = self.pairings.clone();
        next.hosts.retain(|h| h.host != host);
        next.hosts.push(PairedHost { host, name: name.clone(), secret, counter_mark: 0 });
        self.handler.save_pairings(&next)?;
        self.pairings = next;
        self.last_counter.insert(host, 0);
        self.handler.security_event(SecurityEvent::Paired, Some(&name));
        Ok(Response::Paired { device: self.pairings.device, secret })
    }

    /// Answers one frame (or frame error) with the response payload to send.
    pub fn process(&mut self, frame: Result<Vec<u8>, FrameError>) -> Vec<u8> {
        let payload = match frame {
            Ok(p) => p,
            Err(e) => return Self::reply(0, &Err(WireError::Malformed(e.to_string())), None),
        };
        let version = match postcard::take_from_bytes::<u16>(&payload) {
            Ok((v, _)) => v,
            Err(e) => return Self::reply(0, &Err(WireError::Malformed(e.to_string())), None),
        };
        let request: Option<RequestFrame> = postcard::from_bytes(&payload).ok();
        let id = request.as_ref().map_or(0, |r| r.id);
        if version != PROTOCOL_VERSION {
            return Self::reply(id, &Err(WireError::VersionMismatch { device: PROTOCOL_VERSION, host: version }), None);
        }
        let Some(frame) = request else {
            return Self::reply(0, &Err(WireError::Malformed("undecodable envelope".into())), None);
        };
        let Some(auth) = frame.auth else {
            let result = match decode_request(&frame.body) {
                Ok(Request::Hello { host }) => Ok(self.hello(&host)),
                Ok(Request::Pair { host, name }) => self.pair(host, name),
                Ok(_) => {
                    self.handler.security_event(SecurityEvent::Refused(WireError::NotPaired), None);
                    Err(WireError::NotPaired)
                }
                Err(e) => Err(e),
            };
            return Self::reply(id, &result, None);
        };
        let Some(host) = self.pairings.hosts.iter().find(|h| h.host == auth.host).cloned() else {
            self.handler.security_event(SecurityEvent::Refused(WireError::NotPaired), None);
            return Self::reply(id, &Err(WireError::NotPaired), None);
        };
        if !verify_request(&host.secret, version, id, &auth.host, auth.counter, &frame.body, &auth.mac) {
            self.handler.security_event(SecurityEvent::Refused(WireError::BadMac), Some(&host.name));
            return Self::reply(id, &Err(WireError::BadMac), None);
        }
        let floor = self.last_counter.get(&host.host).copied().unwrap_or(0);
        if auth.counter <= floor {
            let e = WireError::Replay { counter: auth.counter, floor };
            self.handler.security_event(SecurityEvent::Refused(e.clone()), Some(&host.name));
            return Self::reply(id, &Err(e), None);
        }
        self.last_counter.insert(host.host, auth.counter);
        let sign = Some((&host.secret, auth.counter));
        if auth.counter >= host.counter_mark {
            let mut next = self.pairings.clone();
            if let Some(h) = next.hosts.iter_mut().find(|h| h.host == host.host) {
                h.counter_mark = auth.counter + COUNTER_STEP;
            }
            if let Err(e) = self.handler.save_pairings(&next) {
                return Self::reply(id, &Err(e), sign);
            }
            self.pairings = next;
        }
        let result = match decode_request(&frame.body) {
            Ok(Request::Hello { host }) => Ok(self.hello(&host)),
            Ok(Request::Pair { host, name }) => self.pair(host, name),
            Ok(Request::Unpair) => {
                let mut next = self.pairings.clone();
                next.hosts.retain(|h| h.host != host.host);
                self.handler.save_pairings(&next).map(|()| {
                    self.pairings = next;
                    self.last_counter.remove(&host.host);
                    self.handler.security_event(SecurityEvent::Unpaired, Some(&host.name));
                    Response::Done
                })
            }
            Ok(request)
                if !self.in_setup_mode()
                    && (matches!(request, Request::FleetJoin { .. }) || self.handler.needs_setup_mode(&request)) =>
            {
                self.handler.security_event(SecurityEvent::Refused(WireError::NotInSetupMode), Some(&host.name));
                Err(WireError::NotInSetupMode)
            }
            Ok(request) => self.handler.handle(request, &host),
            Err(e) => Err(e),
        };
        Self::reply(id, &result, sign)
    }

    /// Serves requests on `link` until `stop` is set or the port fails.
    pub fn serve<P: Port>(&mut self, link: &mut Link<P>, stop: &AtomicBool) -> Result<(), LinkError> {
        while !stop.load(Ordering::Relaxed) {
            match link.recv(Duration::from_millis(200)) {
                Err(LinkError::TimedOut) => continue,
                Err(e) => return Err(e),
                Ok(frame) => {
                    let reply = self.process(frame);
                    link.send(&reply)?;
                }
            }
        }
        Ok(())
    }
}
