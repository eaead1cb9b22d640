//! Smart cards over a real PC/SC stack (cargo feature `smartcards`): `pcscd` with the vpcd
//! virtual reader, and a virtual card of our own in this process (the vpcd protocol: every
//! message a 2-byte big-endian length and a payload; control codes 00 power off, 01 power on,
//! 02 reset, 04 get ATR; longer payloads are APDUs). `scripts/smartcard-tests` starts `pcscd` and runs
//! these; the reader's port comes from `MKPLAN_TEST_VPCD_PORT`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cases::apply::{assert_converged, three_units};
use crate::cases::ceremony::{Asked, Ceremony, perform, with_smart_cards};
use crate::support::*;

const ATR: &str = "3B8F800180318065B0850300EF120FFF82900067";

fn port() -> u16 {
    std::env::var("MKPLAN_TEST_VPCD_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0x8C7B)
}

/// A card in the virtual reader until it is pulled.
struct VirtualCard {
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    serving: Option<JoinHandle<()>>,
}

impl VirtualCard {
    fn insert() -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port())).expect(
            "connect to the vpcd reader (is pcscd running with it? see scripts/smartcard-tests)",
        );
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut reader, flag) = (stream.try_clone().unwrap(), stop.clone());
        let serving = std::thread::spawn(move || {
            let atr = hex::decode(ATR).unwrap();
            while !flag.load(Ordering::SeqCst) {
                let mut length = [0u8; 2];
                match reader.read_exact(&mut length) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(_) => return,
                }
                let mut payload = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if reader.read_exact(&mut payload).is_err() {
                    return;
                }
                let reply: Option<Vec<u8>> = match payload[..] {
                    [0x04] => Some(atr.clone()),
                    [_] => None,
                    // Any APDU: the applet is IBM's; this card only says "function not supported".
                    _ => Some(vec![0x6A, 0x81]),
                };
                if let Some(reply) = reply {
                    let mut message = (reply.len() as u16).to_be_bytes().to_vec();
                    message.extend(reply);
                    if reader.write_all(&message).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            stream,
            stop,
            serving: Some(serving),
        }
    }

    /// Pulls the card: the reader sees it removed.
    fn pull(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(serving) = self.serving.take() {
            let _ = serving.join();
        }
    }
}

fn cards(ws: &Workspace) -> serde_json::Value {
    let run = ws.mkplan(&["cards", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

/// Polls `cards --json` until the first reader's card is (or is not) present.
fn wait_for(ws: &Workspace, present: bool) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let readers = cards(ws);
        let first = &readers["readers"][0];
        if first["card_present"] == present {
            return first.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pcscd never saw the card {}: {readers:#}",
            if present { "inserted" } else { "removed" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One test, because there is one reader: `cards` sees it; a ceremony waits for the card,
/// notices it pulled and put back, then waits for the operator and verifies the load.
#[test]
fn cards_and_a_smart_card_ceremony_on_a_real_pcsc_stack() {
    let ws = rotate_to_b(&three_units(true));
    let empty = wait_for(&ws, false);
    assert!(
        empty["name"]
            .as_str()
            .unwrap()
            .contains("mkplan Key part reader"),
        "{empty:#}"
    );
    let card = VirtualCard::insert();
    let inserted = wait_for(&ws, true);
    assert_eq!(inserted["atr"], ATR);
    card.pull();
    wait_for(&ws, false);

    with_smart_cards(&ws);
    let mut ceremony = Ceremony::start(&ws, &["--parallelism", "1"]);
    // The first load: dana's card, then eli's, one after the other in the same reader, as
    // the TKE application asks for them; eli's must be a new insertion, so the card that is
    // in comes out first (pulled) and the next goes in.
    let mut card: Option<VirtualCard> = None;
    while let Some(asked) = ceremony.next_watching(|line| {
        if line.contains("waiting for dana's key part card") && card.is_none() {
            card = Some(VirtualCard::insert());
        }
        // The person takes dana's card out; once the reader has seen it go, eli's goes in.
        if line.contains("waiting for eli's key part card") {
            card.take().expect("a card is in").pull();
        }
        if line.contains("card removed from mkplan Key part reader") && card.is_none() {
            card = Some(VirtualCard::insert());
        }
    }) {
        perform(&ws, &asked, B);
        ceremony.answer(if matches!(asked, Asked::Rewrap) {
            "yes"
        } else {
            "done"
        });
    }
    let (code, transcript) = ceremony.finish();
    if let Some(card) = card {
        card.pull();
    }
    assert_eq!(code, 0, "{transcript}");
    assert!(
        transcript.contains(&format!(
            "dana's card is in mkplan Key part reader 00 00 (ATR {ATR})"
        )),
        "{transcript}"
    );
    assert_converged(&ws, "smart card ceremony");
}
