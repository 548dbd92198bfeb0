//! Client and server sessions over a real pseudo-terminal pair, with a handler
//! that records what reached it: authentication, replay, forgery, garbage.

use facegate_protocol::auth::sign_request;
use facegate_protocol::frame;
use facegate_protocol::link::Link;
use facegate_protocol::message::{to_bytes, Auth, ModelId, RequestFrame, ResponseFrame};
use facegate_protocol::server::{Handler, PairedHost, Pairings, SecurityEvent, Server};
use facegate_protocol::{Client, ClientError, Request, Response, WireError, PROTOCOL_VERSION};
use serialport::{SerialPort, TTYPort};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Record {
    handled: Vec<Request>,
    events: Vec<SecurityEvent>,
    saved: Vec<Pairings>,
}

struct Recorder(Arc<Mutex<Record>>);

impl Handler for Recorder {
    fn software(&self) -> String {
        "test".into()
    }
    fn model(&self) -> ModelId {
        ModelId::from_bytes([9; 32])
    }
    fn save_pairings(&mut self, p: &Pairings) -> Result<(), WireError> {
        self.0.lock().unwrap().saved.push(p.clone());
        Ok(())
    }
    fn handle(&mut self, request: Request, _host: &PairedHost) -> Result<Response, WireError> {
        self.0.lock().unwrap().handled.push(request.clone());
        match request {
            Request::Remove { name } if name == "nobody" => Err(WireError::NotFound(name)),
            _ => Ok(Response::Done),
        }
    }
    fn security_event(&mut self, what: SecurityEvent, _host: Option<&str>) {
        self.0.lock().unwrap().events.push(what);
    }
}

/// A server thread on the master side; returns the slave path and the record.
fn start(setup: bool) -> (String, Arc<Mutex<Record>>, TTYPort) {
    let (master, slave) = TTYPort::pair().expect("pseudo-terminal");
    let path = slave.name().expect("pts path");
    let record = Arc::new(Mutex::new(Record::default()));
    let mut server = Server::new(Pairings::new_random(), setup.then_some(Duration::from_secs(60)), Recorder(record.clone()));
    std::thread::spawn(move || {
        let mut link = Link::new(master);
        let _ = server.serve(&mut link, &AtomicBool::new(false));
    });
    (path, record, slave)
}

fn open(path: &str) -> Link<Box<dyn serialport::SerialPort>> {
    Link::new(serialport::new(path, 115_200).timeout(Duration::from_millis(100)).open().expect("open pts"))
}

fn client(path: &str, host: [u8; 16]) -> Client<Box<dyn serialport::SerialPort>> {
    Client::connect(open(path), host, Duration::from_secs(5)).expect("hello")
}

#[test]
fn pairing_then_authenticated_requests() {
    let (path, record, _keep) = start(true);
    let mut c = client(&path, [1; 16]);
    assert!(!c.hello().paired && c.hello().setup_mode);
    assert!(matches!(c.call(&Request::Status), Err(ClientError::Device(WireError::NotPaired))));
    let secret = c.pair("laptop").unwrap();
    assert_eq!(c.call(&Request::Status).unwrap(), Response::Done);
    let err = c.call(&Request::Remove { name: "nobody".into() }).unwrap_err();
    assert!(matches!(err, ClientError::Device(WireError::NotFound(_))), "{err}");
    // A second session starts above the counters already used.
    drop(c);
    let mut c = client(&path, [1; 16]);
    assert!(c.hello().paired && c.hello().counter_floor >= 2);
    c.set_secret(secret);
    assert_eq!(c.call(&Request::Unlock).unwrap(), Response::Done);
    let r = record.lock().unwrap();
    assert_eq!(r.handled, vec![Request::Status, Request::Remove { name: "nobody".into() }, Request::Unlock]);
    assert!(r.saved.last().unwrap().hosts[0].counter_mark > 3, "counter mark persisted ahead");
}

#[test]
fn pairing_needs_setup_mode() {
    let (path, record, _keep) = start(false);
    let mut c = client(&path, [2; 16]);
    assert!(matches!(c.pair("laptop"), Err(ClientError::Device(WireError::NotInSetupMode))));
    let r = record.lock().unwrap();
    assert!(r.saved.is_empty());
    assert_eq!(r.events, vec![SecurityEvent::Refused(WireError::NotInSetupMode)], "the attempt is logged");
}

/// Sends raw bytes and returns the decoded reply.
fn exchange(link: &mut Link<Box<dyn serialport::SerialPort>>, wire: &[u8]) -> (u32, Result<Response, WireError>) {
    link.write_raw(wire).unwrap();
    let payload = link.recv(Duration::from_secs(5)).unwrap().unwrap();
    let frame: ResponseFrame = postcard::from_bytes(&payload).unwrap();
    (frame.id, postcard::from_bytes(&frame.body).unwrap())
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut w = Vec::new();
    frame::encode(payload, &mut w).unwrap();
    w
}

#[test]
fn forgeries_replays_garbage_and_versions_are_refused_without_effect() {
    let (path, record, _keep) = start(true);
    let host = [3; 16];
    let secret = client(&path, host).pair("laptop").unwrap();
    let mut link = open(&path);
    link.write_raw(&[0]).unwrap();
    let body = to_bytes(&Request::Unlock);
    let signed = |id: u32, counter: u64, body: &[u8]| {
        let mac = sign_request(&secret, PROTOCOL_VERSION, id, &host, counter, body);
        to_bytes(&RequestFrame { version: PROTOCOL_VERSION, id, auth: Some(Auth { host, counter, mac }), body: body.to_vec() })
    };
    // A good request goes through once ...
    let good = framed(&signed(7, 100, &body));
    assert_eq!(exchange(&mut link, &good), (7, Ok(Response::Done)));
    // ... and its replay is refused.
    assert_eq!(exchange(&mut link, &good), (7, Err(WireError::Replay { counter: 100, floor: 100 })));
    // Forged: a changed body under the old MAC.
    let mut forged: RequestFrame = postcard::from_bytes(&signed(8, 101, &body)).unwrap();
    forged.body = to_bytes(&Request::LogClear);
    assert_eq!(exchange(&mut link, &framed(&to_bytes(&forged))), (8, Err(WireError::BadMac)));
    // Unknown host.
    let mut stranger: RequestFrame = postcard::from_bytes(&signed(9, 102, &body)).unwrap();
    stranger.auth.as_mut().unwrap().host = [4; 16];
    assert_eq!(exchange(&mut link, &framed(&to_bytes(&stranger))), (9, Err(WireError::NotPaired)));
    // Wrong version.
    let mut future: RequestFrame = postcard::from_bytes(&signed(10, 103, &body)).unwrap();
    future.version = PROTOCOL_VERSION + 1;
    assert_eq!(
        exchange(&mut link, &framed(&to_bytes(&future))),
        (10, Err(WireError::VersionMismatch { device: PROTOCOL_VERSION, host: PROTOCOL_VERSION + 1 }))
    );
    // A request this build does not know, properly signed.
    assert_eq!(exchange(&mut link, &framed(&signed(11, 104, &[60]))), (11, Err(WireError::UnknownRequest)));
    // Garbage, a flipped bit, a truncated frame, an oversized frame.
    assert!(matches!(exchange(&mut link, b"\x01\x02garbage\x00"), (0, Err(WireError::Malformed(_)))));
    let mut wire = framed(&signed(12, 105, &body));
    wire[6] ^= 0x04;
    if wire[6] != 0 {
        assert!(matches!(exchange(&mut link, &wire), (0, Err(WireError::Malformed(_)))));
    }
    let cut = framed(&signed(13, 106, &body));
    assert!(matches!(exchange(&mut link, &[&cut[..cut.len() / 2], &[0]].concat()), (0, Err(WireError::Malformed(_)))));
    let huge = vec![0x55u8; 3 * facegate_protocol::MAX_FRAME];
    assert!(matches!(exchange(&mut link, &[&huge[..], &[0]].concat()), (0, Err(WireError::Malformed(_)))));
    // Only the one good request reached the handler; the refusals were reported.
    let r = record.lock().unwrap();
    assert_eq!(r.handled, vec![Request::Unlock]);
    let refused: Vec<_> = r.events.iter().filter(|e| matches!(e, SecurityEvent::Refused(_))).collect();
    assert_eq!(refused.len(), 3, "replay, bad MAC, unknown host: {:?}", r.events);
    // The server is still up.
    drop(r);
    assert_eq!(exchange(&mut link, &framed(&signed(14, 107, &body))), (14, Ok(Response::Done)));
}

#[test]
fn a_forged_response_is_detected() {
    // A fake device that answers with a valid frame but no MAC.
    let (master, slave) = TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    std::thread::spawn(move || {
        let mut link = Link::new(master);
        let mut n = 0;
        while let Ok(frame) = link.recv(Duration::from_secs(10)) {
            let Ok(payload) = frame else { continue };
            let req: RequestFrame = postcard::from_bytes(&payload).unwrap();
            n += 1;
            let result: Result<Response, WireError> = if n == 1 {
                Ok(Response::Hello(facegate_protocol::message::DeviceHello {
                    device: [0; 16],
                    software: "fake".into(),
                    model: ModelId::from_bytes([0; 32]),
                    paired: true,
                    counter_floor: 0,
                    setup_mode: false,
                }))
            } else {
                Ok(Response::Done)
            };
            let reply = ResponseFrame { version: PROTOCOL_VERSION, id: req.id, mac: None, body: to_bytes(&result) };
            link.send(&to_bytes(&reply)).unwrap();
        }
    });
    let mut c = client(&path, [5; 16]);
    c.set_secret([1; 32]);
    assert!(matches!(c.call(&Request::Unlock), Err(ClientError::Protocol(_))));
    drop(slave);
}
