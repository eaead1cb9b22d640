//! Smart card readers over PC/SC (cargo feature `smartcards`): what any tool can see of an
//! EP11 smart card without IBM's applet: the reader names, whether a card is in, its ATR, and
//! insert/remove events. The calls block; callers run them on a blocking thread.

use std::time::{Duration, Instant};

use pcsc::{Context, ReaderState, Scope, State};
use serde::Serialize;

/// Readers one query lists at most.
pub const READERS_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reader {
    pub name: String,
    pub card_present: bool,
    /// The card's ATR in upper-case hex, when a card is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atr: Option<String>,
    /// The reader's count of insertions and removals: a card swapped between two looks
    /// still shows here.
    #[serde(skip)]
    pub events: u32,
}

fn context() -> Result<Context, String> {
    Context::establish(Scope::User).map_err(|e| {
        format!(
            "cannot reach the PC/SC service (pcscd): {e}. Start pcscd, or check PCSCLITE_CSOCK_NAME"
        )
    })
}

/// Every reader and its card, now.
pub fn readers() -> Result<Vec<Reader>, String> {
    let context = context()?;
    let names = match context.list_readers_owned() {
        Ok(names) => names,
        Err(pcsc::Error::NoReadersAvailable) => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list the smart card readers: {e}")),
    };
    let mut states: Vec<ReaderState> = names
        .into_iter()
        .take(READERS_MAX)
        .map(|name| ReaderState::new(name, State::UNAWARE))
        .collect();
    if states.is_empty() {
        return Ok(Vec::new());
    }
    context
        .get_status_change(Duration::ZERO, &mut states)
        .map_err(|e| format!("cannot read the readers' state: {e}"))?;
    Ok(states.iter().map(reader).collect())
}

fn reader(state: &ReaderState) -> Reader {
    let card_present =
        state.event_state().contains(State::PRESENT) && !state.event_state().contains(State::MUTE);
    Reader {
        name: state.name().to_string_lossy().into_owned(),
        card_present,
        atr: (card_present && !state.atr().is_empty()).then(|| hex::encode_upper(state.atr())),
        events: state.event_count(),
    }
}

/// Whether a reader's name matches a pattern from the desired file: a substring, case ignored.
pub fn matches(reader: &str, pattern: &str) -> bool {
    reader.to_lowercase().contains(&pattern.to_lowercase())
}

/// What happened while waiting for a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Inserted(Reader),
    Removed(String),
}

/// Waits until a card is in a reader matching `pattern`, up to `timeout`, reporting every
/// insertion and removal on the way. `after_removal_from` names a reader whose card (the
/// previous holder's) must come out first: the next card is a new insertion. Returns the
/// reader with its card.
pub fn wait_for_card(
    pattern: &str,
    timeout: Duration,
    after_removal_from: Option<&str>,
    mut report: impl FnMut(&Event),
) -> Result<Reader, String> {
    let deadline = Instant::now() + timeout;
    let mut last: Vec<Reader> = Vec::new();
    let mut emptied = after_removal_from.is_none();
    let start = readers()?;
    let events_at_start = |name: &str| start.iter().find(|r| r.name == name).map(|r| r.events);
    loop {
        let now = readers()?;
        for reader in &now {
            let before = last.iter().find(|r| r.name == reader.name);
            let swapped = before.is_some_and(|b| {
                b.card_present && reader.card_present && b.events != reader.events
            });
            match (before.map(|r| r.card_present), reader.card_present) {
                _ if swapped => {
                    report(&Event::Removed(reader.name.clone()));
                    report(&Event::Inserted(reader.clone()));
                }
                (Some(false) | None, true) => report(&Event::Inserted(reader.clone())),
                (Some(true), false) => report(&Event::Removed(reader.name.clone())),
                _ => {}
            }
        }
        if !emptied {
            emptied = now.iter().all(|r| {
                Some(r.name.as_str()) != after_removal_from
                    || !r.card_present
                    || events_at_start(&r.name) != Some(r.events)
            });
        }
        if emptied
            && let Some(found) = now
                .iter()
                .find(|r| r.card_present && matches(&r.name, pattern))
        {
            return Ok(found.clone());
        }
        if Instant::now() >= deadline {
            let names: Vec<&str> = now.iter().map(|r| r.name.as_str()).collect();
            return Err(format!(
                "no card in a reader matching {pattern:?} within {} s (readers: {})",
                timeout.as_secs(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
        last = now;
        std::thread::sleep(Duration::from_millis(200));
    }
}
