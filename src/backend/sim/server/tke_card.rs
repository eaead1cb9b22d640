//! `sim serve --protocol tke`, the card's half of signed admin commands (tke-wire.md §4):
//! each domain's transaction counter and importer key, and the checks a crypto unit makes
//! before it acts: the counter is the one it holds + 1 (3-163 otherwise), every signature is by
//! an installed administrator (257) and verifies against that administrator's `public_key`
//! in the fleet (192), and there are enough of them (208: the signature threshold for commit,
//! set immediate and clear; one for a load and a new importer key). A load's key parts are
//! decrypted with the domain's importer key; a commit's VP must be the new register's
//! (101/48). Then the simulator's rules (`hsm`) act exactly as for the other front ends, so a
//! harmful command is performed as the service would, and recorded as an incident.
//!
//! Faults count signed commands, from 1: `stale_counter_command` answers 3-163 without
//! acting, `tamper_command` changes the block on the way (its signatures fail),
//! `crash_after_command` and `lose_command_response` act then die or answer 500, and
//! `forge_command_reply` changes the reply after the module signed it.
//!
//! The counters and importer keys live in memory: a restarted server starts them afresh, as
//! mkplan re-reads the counter before each command and asks for an importer key when a domain
//! has none.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use p521::{PublicKey, SecretKey};

use super::durable::Shared;
use super::resources::problem;
use crate::backend::sim::{Refused, SimOperation};
use crate::backend::tke::admin::{self, SignedRequest};
use crate::backend::tke::oa_test_chain::reply_signer_info;
use crate::backend::tke::signer::SignatureKind;
use crate::backend::tke::{ep11, kari, sigkey_rsa};
use crate::keypart::{self, Secret32};
use crate::model::{CryptoUnit, Mode, VerificationPattern};

/// EP11 return codes the card answers with (§5.3).
const KEY_HANDLE_INVALID: u32 = 0x60;
const KEY_CHANGED: u32 = 0x65;
const VP_MISMATCH_REASON: u32 = 48;
const ARGUMENTS_BAD: u32 = 0x07;
const PIN_EXPIRED: u32 = 0xA3;
const IMPRINT_MODE: u32 = 0xB3;
const SIGNATURE_INVALID: u32 = 0xC0;
const TEMPLATE_INCOMPLETE: u32 = 0xD0;
const USER_NOT_LOGGED_IN: u32 = 0x101;

/// One domain's card-side state.
#[derive(Default)]
pub(crate) struct Domain {
    pub(crate) counter: u64,
    pub(crate) importer: Option<Importer>,
}

/// A domain's importer key, with its public half computed once: every query reports it, and
/// deriving it is a P-521 scalar multiplication.
pub(crate) struct Importer {
    secret: SecretKey,
    public: PublicKey,
}

impl Importer {
    fn new(secret: SecretKey) -> Self {
        let public = secret.public_key();
        Importer { secret, public }
    }
}

/// Every simulated domain, by crypto unit id, and the signed commands received so far.
#[derive(Default)]
pub(crate) struct Cards {
    domains: HashMap<String, Domain>,
    commands: u64,
}

impl Cards {
    /// The counter and importer public key a query reports for `hsm_id`.
    pub(crate) fn view(&self, hsm_id: &str) -> (u64, Option<PublicKey>) {
        self.domains
            .get(&hsm_id.to_ascii_lowercase())
            .map(|d| (d.counter, d.importer.as_ref().map(|key| key.public)))
            .unwrap_or_default()
    }
}

/// Whether an m_admin payload is a signed command (not a query).
pub(crate) fn is_command(command: u32) -> bool {
    matches!(
        command,
        admin::GEN_IMPORTER
            | admin::IMPORT_WK
            | admin::COMMIT_WK
            | admin::FINALIZE_WK
            | admin::CLEAR_NEXT_WK
    )
}

/// What the card answers: a block return code (0 = done) and its output.
struct Answer {
    code: u32,
    output: Vec<u8>,
}

fn refused(code: u32) -> Answer {
    Answer {
        code,
        output: Vec::new(),
    }
}

/// One signed command to the unit `hsm_id` of `instance`: the m_admin response payload, or
/// the HTTP response a fault gives instead.
pub(super) async fn command(
    shared: &Arc<Shared>,
    instance: &str,
    unit: &CryptoUnit,
    domain: u32,
    payload: &[u8],
    signing: super::tke_front::Signing,
) -> Result<Vec<u8>, Response> {
    let Ok(mut request) = admin::parse_signed_request(payload) else {
        return Ok(ep11::error_response(ep11::M_ADMIN, domain, ARGUMENTS_BAD));
    };
    let hsm_id = unit.hsm_id.to_ascii_lowercase();
    let faults = &shared.faults;
    let number = {
        let mut cards = shared.cards.lock().unwrap_or_else(|e| e.into_inner());
        cards.commands += 1;
        cards.commands
    };
    if faults.tamper_command.contains(&number) {
        // Something on the way changed the command: the last byte of its input.
        if let Some(last) = request.block.last_mut() {
            *last ^= 0x01;
        }
    }
    let (answer, counter) = if faults.stale_counter_command.contains(&number) {
        (refused(PIN_EXPIRED), shared.cards_view(&hsm_id).0)
    } else {
        act(shared, instance, unit, &request).await
    };
    if answer.code == 0 && faults.crash_after_command.contains(&number) {
        shared.crash().await;
    }
    if answer.code == 0 && faults.lose_command_response.contains(&number) {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            &format!("injected fault lose_command_response={number}: the response was lost"),
        )
        .into_response());
    }
    let module = super::tke_front::module_id(unit);
    let admin_domain = [domain.to_be_bytes(), [0; 4]].concat();
    let mut block = ep11::admin_response_block(
        &admin_domain,
        request.command,
        &module,
        counter,
        answer.code,
        &answer.output,
    );
    let signature = reply_signer_info(&signing.module().epoch, &block);
    if faults.forge_command_reply.contains(&number) {
        let last = block.len() - 1;
        block[last] ^= 0x01;
    }
    Ok(ep11::signed_admin_response(domain, &block, &signature))
}

impl Shared {
    pub(super) fn cards_view(&self, hsm_id: &str) -> (u64, Option<PublicKey>) {
        self.cards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .view(hsm_id)
    }
}

/// The card's checks, then the command; the answer and the counter after it.
async fn act(
    shared: &Arc<Shared>,
    instance: &str,
    unit: &CryptoUnit,
    request: &SignedRequest,
) -> (Answer, u64) {
    let hsm_id = unit.hsm_id.to_ascii_lowercase();
    let (counter, _) = shared.cards_view(&hsm_id);
    if unit.mode == Mode::Imprint {
        return (refused(IMPRINT_MODE), counter);
    }
    let parts = if request.command == admin::IMPORT_WK {
        match admin::parse_import_parts(&request.input) {
            Ok(parts) if !parts.is_empty() => parts,
            _ => return (refused(ARGUMENTS_BAD), counter),
        }
    } else {
        vec![request.clone()]
    };
    let mut signers = Vec::new();
    for part in &parts {
        if let Err(code) = check_counter(part, counter) {
            return (refused(code), counter);
        }
        match check_signatures(unit, part) {
            Ok(names) => signers = names,
            Err(code) => return (refused(code), counter),
        }
    }
    if signers.len() < signatures_needed(request.command, unit) {
        return (refused(TEMPLATE_INCOMPLETE), counter);
    }
    let operation = match operation(shared, instance, unit, request, &parts, signers) {
        Ok(Some(operation)) => operation,
        Ok(None) => {
            // GEN_IMPORTER: a new importer key for the domain.
            let importer = Importer::new(kari::random_secret());
            let output = kari::importer_output(&importer.public);
            let mut cards = shared.cards.lock().unwrap_or_else(|e| e.into_inner());
            let domain = cards.domains.entry(hsm_id).or_default();
            domain.importer = Some(importer);
            domain.counter += 1;
            return (Answer { code: 0, output }, domain.counter);
        }
        Err(answer) => return (answer, counter),
    };
    let (result, applied) = {
        let mut state = shared.state();
        let result = state.perform(&operation, shared.clock.now_ms());
        (result, state.applied)
    };
    shared.commit_wanted.notify_one();
    shared.durable(applied).await;
    match result {
        Ok(_) => {
            let mut cards = shared.cards.lock().unwrap_or_else(|e| e.into_inner());
            let domain = cards.domains.entry(hsm_id).or_default();
            domain.counter += 1;
            (
                Answer {
                    code: 0,
                    output: Vec::new(),
                },
                domain.counter,
            )
        }
        // The simulator's rules refused it (a rewrap running, a register in the wrong
        // state): the card's "bad arguments".
        Err(Refused::Busy(_) | Refused::Rule(_) | Refused::Changed(_)) => {
            (refused(ARGUMENTS_BAD), counter)
        }
    }
}

/// Signatures a command needs: the threshold for commit, set immediate and clear; one for a
/// load and a new importer key (what the SDK sends, tke-wire.md §4.1; the card's own rule
/// is not published, §8.5).
fn signatures_needed(command: u32, unit: &CryptoUnit) -> usize {
    match command {
        admin::COMMIT_WK | admin::FINALIZE_WK | admin::CLEAR_NEXT_WK => {
            usize::from(unit.signature_threshold)
        }
        _ => 1,
    }
}

/// The counter a command carries must be the card's + 1 (16 bytes, §4.2).
fn check_counter(request: &SignedRequest, counter: u64) -> Result<(), u32> {
    let expected = [[0u8; 8], (counter + 1).to_be_bytes()].concat();
    if request.counter != expected {
        return Err(PIN_EXPIRED);
    }
    Ok(())
}

/// Every SignerInfo is by an installed administrator and verifies; the distinct signers.
fn check_signatures(unit: &CryptoUnit, request: &SignedRequest) -> Result<Vec<String>, u32> {
    let mut names: Vec<String> = Vec::new();
    for info in &request.signer_infos {
        let Some(administrator) = unit
            .administrators
            .iter()
            .find(|a| hex::decode(a.ski.as_str()).ok().as_deref() == Some(&info.ski[..]))
        else {
            return Err(USER_NOT_LOGGED_IN);
        };
        let key = administrator
            .public_key
            .as_deref()
            .and_then(|k| hex::decode(k).ok())
            .unwrap_or_default();
        let good = match info.kind {
            Some(SignatureKind::P521) => admin::verify_p521(&key, &request.block, &info.signature),
            Some(SignatureKind::Rsa2048) => {
                sigkey_rsa::verify_x931(&key, &request.block, &info.signature)
            }
            None => false,
        };
        if !good {
            return Err(SIGNATURE_INVALID);
        }
        if !names.contains(&administrator.name) {
            names.push(administrator.name.clone());
        }
    }
    Ok(names)
}

/// The simulator operation a checked command is; `None` for GEN_IMPORTER.
fn operation(
    shared: &Shared,
    instance: &str,
    unit: &CryptoUnit,
    request: &SignedRequest,
    parts: &[SignedRequest],
    signers: Vec<String>,
) -> Result<Option<SimOperation>, Answer> {
    let (instance, hsm_id) = (instance.to_string(), unit.hsm_id.clone());
    let vp = || -> Result<VerificationPattern, Answer> {
        let bytes: [u8; 32] = request
            .input
            .as_slice()
            .try_into()
            .map_err(|_| refused(ARGUMENTS_BAD))?;
        Ok(VerificationPattern::from_bytes(&bytes))
    };
    Ok(Some(match request.command {
        admin::GEN_IMPORTER => {
            if request.input != admin::IMPORTER_P521.to_be_bytes() {
                return Err(refused(ARGUMENTS_BAD));
            }
            return Ok(None);
        }
        admin::IMPORT_WK => {
            let cards = shared.cards.lock().unwrap_or_else(|e| e.into_inner());
            let Some(importer) = cards
                .domains
                .get(&hsm_id.to_ascii_lowercase())
                .and_then(|d| d.importer.as_ref())
            else {
                return Err(refused(KEY_HANDLE_INVALID));
            };
            let ski = kari::importer_ski(&importer.public);
            let mut key_parts = Vec::with_capacity(parts.len());
            for part in parts {
                match kari::open(&importer.secret, &part.input) {
                    Ok((named, part)) if named == ski => {
                        key_parts.push(Secret32::from_bytes(*part));
                    }
                    _ => return Err(refused(KEY_HANDLE_INVALID)),
                }
            }
            let combined = keypart::combine(&key_parts).map_err(|_| refused(ARGUMENTS_BAD))?;
            SimOperation::LoadNewMk {
                instance,
                unit: hsm_id,
                verification_pattern: combined.verification_pattern(),
            }
        }
        admin::COMMIT_WK => {
            let verification_pattern = vp()?;
            if unit.new_register.verification_pattern() != Some(&verification_pattern) {
                return Err(Answer {
                    code: KEY_CHANGED,
                    output: VP_MISMATCH_REASON.to_be_bytes().to_vec(),
                });
            }
            SimOperation::CommitNewMk {
                instance,
                unit: hsm_id,
                verification_pattern,
                signers,
            }
        }
        admin::FINALIZE_WK => SimOperation::SetImmediate {
            instance,
            unit: hsm_id,
            verification_pattern: vp()?,
            signers,
        },
        // A signed command carries the unit's transaction counter: a stale one is refused
        // by the counter, so it needs no verification pattern.
        _ => SimOperation::ClearNewMk {
            instance,
            unit: hsm_id,
            verification_pattern: None,
        },
    }))
}

#[cfg(test)]
mod tests {
    use p521::SecretKey;

    use super::*;
    use crate::backend::tke::admin::Address;
    use crate::backend::tke::sigkey::{P521Signer, p521_ski};
    use crate::backend::tke::signer::Signer;
    use crate::model::{Administrator, Ski};

    fn key(seed: u8) -> SecretKey {
        let mut scalar = [0u8; 66];
        scalar[10..].fill(seed);
        SecretKey::from_slice(&scalar).unwrap()
    }

    fn administrator(name: &str, seed: u8) -> Administrator {
        let point = kari::point(&key(seed).public_key());
        Administrator {
            name: name.into(),
            ski: Ski::parse(&hex::encode(p521_ski(&point))).unwrap(),
            public_key: Some(hex::encode(point)),
        }
    }

    fn unit() -> CryptoUnit {
        let fleet = crate::backend::sim::Fleet::parse(
            "fleet.yaml",
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/fleets/three-units.yaml"
            ))
            .unwrap(),
        )
        .unwrap();
        let mut unit = fleet.instances[0].crypto_units[0].clone();
        unit.administrators = vec![administrator("alice", 0x41), administrator("bob", 0x42)];
        unit
    }

    fn request(signers: &[u8], counter: u8) -> SignedRequest {
        let address = Address {
            admin_domain: vec![0, 0, 0, 4, 0, 0, 0, 0],
            module_id: vec![0; 16],
            counter: [[0u8; 15].as_slice(), &[counter]].concat(),
        };
        let block = admin::block(admin::COMMIT_WK, &address, &[0x57; 32]);
        let signers: Vec<P521Signer> = signers
            .iter()
            .map(|seed| P521Signer::new("x", "test", &key(*seed)))
            .collect();
        let signers: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
        let payload =
            futures_util::FutureExt::now_or_never(admin::signed_request(4, &block, &signers))
                .unwrap()
                .unwrap();
        admin::parse_signed_request(&payload).unwrap()
    }

    #[test]
    fn the_card_checks_signers_signatures_thresholds_and_counters() {
        let unit = unit();
        // alice and bob, installed, sign: both count.
        let both = request(&[0x41, 0x42], 0);
        assert_eq!(check_signatures(&unit, &both).unwrap(), ["alice", "bob"]);
        assert!(check_counter(&both, 0).is_ok());
        // The same command again: its counter is stale now.
        assert_eq!(check_counter(&both, 1), Err(PIN_EXPIRED));
        // One signature is below the commit's threshold of 2.
        let alone = request(&[0x41], 0);
        assert_eq!(check_signatures(&unit, &alone).unwrap().len(), 1);
        assert_eq!(signatures_needed(admin::COMMIT_WK, &unit), 2);
        assert_eq!(signatures_needed(admin::IMPORT_WK, &unit), 1);
        // A signer who is not installed: 257.
        assert_eq!(
            check_signatures(&unit, &request(&[0x43], 0)),
            Err(USER_NOT_LOGGED_IN)
        );
        // A signature over other bytes: 192.
        let mut changed = both.clone();
        *changed.block.last_mut().unwrap() ^= 1;
        assert_eq!(check_signatures(&unit, &changed), Err(SIGNATURE_INVALID));
        // An installed administrator whose public key the fleet does not give: 192.
        let mut unknown_key = unit.clone();
        unknown_key.administrators[0].public_key = None;
        assert_eq!(
            check_signatures(&unknown_key, &both),
            Err(SIGNATURE_INVALID)
        );
    }
}
