//! Property tests (bounded fuzzing) of everything that reads untrusted bytes:
//! the frame decoder, the request decoder, and a whole server step. None may
//! panic, and nothing unauthenticated may reach the handler or change pairings.

use facegate_protocol::frame::{self, Decoder};
use facegate_protocol::message::{decode_request, ModelId};
use facegate_protocol::server::{Handler, PairedHost, Pairings, SecurityEvent, Server};
use facegate_protocol::{Request, Response, WireError};
use proptest::prelude::*;

struct Counting(u32);

impl Handler for Counting {
    fn software(&self) -> String {
        String::new()
    }
    fn model(&self) -> ModelId {
        ModelId::from_bytes([0; 32])
    }
    fn save_pairings(&mut self, _: &Pairings) -> Result<(), WireError> {
        Ok(())
    }
    fn handle(&mut self, _: Request, _: &PairedHost) -> Result<Response, WireError> {
        self.0 += 1;
        Ok(Response::Done)
    }
    fn security_event(&mut self, _: SecurityEvent, _: Option<&str>) {}
}

fn cases() -> u32 {
    std::env::var("FACEGATE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn frame_decoder_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let mut d = Decoder::new();
        let mut longest = 0;
        d.feed(&bytes, |f| if let Ok(p) = f { longest = longest.max(p.len()) });
        prop_assert!(longest <= facegate_protocol::MAX_FRAME);
        let _ = frame::decode(&bytes);
    }

    #[test]
    fn frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..facegate_protocol::MAX_FRAME)) {
        let mut wire = Vec::new();
        frame::encode(&payload, &mut wire).unwrap();
        prop_assert_eq!(wire.iter().filter(|b| **b == 0).count(), 1);
        let mut got = Vec::new();
        Decoder::new().feed(&wire, |f| got.push(f));
        prop_assert_eq!(got, vec![Ok(payload)]);
    }

    #[test]
    fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_request(&bytes);
    }

    #[test]
    fn random_frames_never_reach_the_handler(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut pairings = Pairings::new_random();
        pairings.hosts.push(PairedHost { host: [1; 16], name: "h".into(), secret: [2; 32], counter_mark: 0 });
        let before = pairings.clone();
        let mut server = Server::new(pairings, None, Counting(0));
        let mut replies = Vec::new();
        Decoder::new().feed(&bytes, |f| replies.push(f));
        for f in replies {
            let _ = server.process(f);
        }
        let _ = server.process(Ok(bytes));
        prop_assert_eq!(server.handler.0, 0);
        prop_assert_eq!(&server.pairings, &before);
    }
}
