//! The TKE backend's writing side (tke-wire.md §4): a load is IMPORT_WK (the key parts
//! encrypted for the domain's importer key, which GEN_IMPORTER makes when the domain has
//! none), a commit COMMIT_WK, a set immediate FINALIZE_WK and a clear CLEAR_NEXT_WK, each
//! signed by the administrators whose signature keys the desired file names. The rewrap has no
//! published trigger (§8.1): it stays a ceremony step and never reaches `perform`.
//!
//! Commands to one domain go strictly one at a time. Before each, the domain attributes are
//! read (a reply the module signed) for the counter, and the administrator list for who may
//! sign; the command carries that counter + 1. A stale counter (3-163: someone else sent a
//! command meanwhile) is read again and signed again, a bounded number of times. A command is
//! never resent blindly: when its answer is lost or cannot be trusted, the outcome is unknown
//! (`BackendError::Transient`) and the executor settles it by reading the registers.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::json;
use zeroize::Zeroizing;

use super::admin::{self, Address};
use super::signer::{SignError, Signer};
use super::{BackendError, Operation, Target, TkeBackend, WireError, der, ep11, htp, kari, oa};
use crate::backend::SendBy;
use crate::backend::http::{COMMAND_TIMEOUT_MS, Failure, UnitList, request_name};

/// Attempts of one command when the card answers "stale transaction counter".
pub const STALE_COUNTER_ATTEMPTS_MAX: u32 = 3;
/// The EP11 code of a stale counter (§5.3).
const PIN_EXPIRED: u32 = 0xA3;

/// What one signed command asks for.
struct Command<'a> {
    /// The operation's name, as the journal and messages say it.
    name: &'static str,
    id: u32,
    input: Vec<u8>,
    /// Administrators to ask first (the plan's signers for a commit or set immediate).
    preferred: &'a [String],
    /// Signatures it carries: the signature threshold, or one.
    threshold: bool,
}

impl TkeBackend {
    /// Sends one mutating operation as signed admin commands.
    pub async fn perform(
        &self,
        operation: &Operation<'_>,
        send_by: SendBy,
    ) -> Result<(), BackendError> {
        let (instance, unit) = match operation {
            Operation::LoadNewMk { instance, unit, .. }
            | Operation::CommitNewMk { instance, unit, .. }
            | Operation::ClearNewMk { instance, unit, .. }
            | Operation::SetImmediate { instance, unit, .. } => (*instance, *unit),
            Operation::RewrapKeyStorage { .. } => {
                return Err(BackendError::Refused {
                    operation: "rewrap_key_storage".into(),
                    reason: format!(
                        "{} has no published way to start the rewrap: it is a ceremony step (`ibmcloud tke cryptounit-mk-rotate`). Nothing was sent",
                        self.shown
                    ),
                });
            }
        };
        if self.signers.is_empty() {
            return Err(BackendError::NotSent {
                operation: operation_name(operation).into(),
                why: format!(
                    "{} sends signed commands only with `signature_keys:` in the desired file; perform the step with the TKE CLI instead",
                    self.shown
                ),
            });
        }
        let (location, module) = self.locate(instance, unit).await?;
        let (cm, domain) = super::parse_location(&location)
            .map_err(|e| BackendError::Protocol(format!("crypto unit {unit}: {e}")))?;
        let target = Target {
            instance,
            hsm_id: unit,
            module,
            cm,
            domain,
        };
        // One command at a time per domain, from the counter read to the answer.
        let lock = self.domain_lock(&format!("{}#{domain}", target.module));
        let _alone = lock.lock().await;
        match operation {
            Operation::LoadNewMk { key_parts, .. } => {
                let importer = self.importer(&target, send_by).await?;
                let ski = kari::importer_ski(&importer);
                let recipient_infos: Vec<Vec<u8>> = key_parts
                    .iter()
                    .map(|part| {
                        kari::recipient_info(
                            &importer,
                            &ski,
                            part.expose(),
                            &kari::random_secret(),
                            &kari::random_ukm(),
                        )
                    })
                    .collect();
                let command = Command {
                    name: "load_new_mk",
                    id: admin::IMPORT_WK,
                    input: Vec::new(),
                    preferred: &[],
                    threshold: false,
                };
                self.send_signed(&target, &command, Some(&recipient_infos), send_by)
                    .await
                    .map(|_| ())
            }
            Operation::CommitNewMk {
                verification_pattern,
                signers,
                ..
            }
            | Operation::SetImmediate {
                verification_pattern,
                signers,
                ..
            } => {
                let commit = matches!(operation, Operation::CommitNewMk { .. });
                let command = Command {
                    name: operation_name(operation),
                    id: if commit {
                        admin::COMMIT_WK
                    } else {
                        admin::FINALIZE_WK
                    },
                    input: verification_pattern.to_bytes().to_vec(),
                    preferred: signers,
                    threshold: true,
                };
                self.send_signed(&target, &command, None, send_by)
                    .await
                    .map(|_| ())
            }
            _ => {
                let command = Command {
                    name: "clear_new_mk",
                    id: admin::CLEAR_NEXT_WK,
                    input: Vec::new(),
                    preferred: &[],
                    threshold: true,
                };
                self.send_signed(&target, &command, None, send_by)
                    .await
                    .map(|_| ())
            }
        }
    }

    fn domain_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.domains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// The unit's location (from the instance's list) and its crypto module.
    async fn locate(&self, instance: &str, unit: &str) -> Result<(String, String), BackendError> {
        self.authenticate().await?;
        let url = self.transport.url(&["v1", "tke", instance, "hsms"]);
        let bytes = self
            .read_call(Method::GET, url.clone(), None, None)
            .await
            .map_err(|f| self.transport.read_error(f, &Method::GET, &url))?;
        let list: UnitList = serde_json::from_slice(&bytes).map_err(|_| {
            BackendError::Protocol(format!(
                "{}: the service answered a list of crypto units mkplan cannot read",
                request_name(&Method::GET, &url)
            ))
        })?;
        let entries = list.entries();
        let (_, entry) = entries
            .iter()
            .find(|(_, e)| e.hsm_id.eq_ignore_ascii_case(unit))
            .ok_or_else(|| {
                BackendError::NotFound(format!(
                    "service instance {instance} no longer lists crypto unit {unit}"
                ))
            })?;
        Ok((
            entry.location.clone(),
            super::pacing::module_of(&entry.location),
        ))
    }

    /// The domain's importer key: read, or made with GEN_IMPORTER when it has none.
    async fn importer(
        &self,
        target: &Target<'_>,
        send_by: SendBy,
    ) -> Result<p521::PublicKey, BackendError> {
        let wire =
            |e: WireError| BackendError::Protocol(format!("crypto unit {}: {e}", target.hsm_id));
        let payload = self
            .query(
                target,
                &ep11::admin_query(target.domain, ep11::ADMQ_IMPORTER, &[]),
            )
            .await?;
        // The "not found" answer (96/60): the domain has no importer key yet. (Unsigned
        // here; a key that is there is read again below, its reply verified.)
        let output = if not_found(&payload) {
            None
        } else {
            Some(self.admin(target, ep11::ADMQ_IMPORTER, &[]).await?.output)
        };
        let output = match output {
            Some(output) => output,
            None => {
                let command = Command {
                    name: "load_new_mk",
                    id: admin::GEN_IMPORTER,
                    input: admin::IMPORTER_P521.to_be_bytes().to_vec(),
                    preferred: &[],
                    threshold: false,
                };
                self.send_signed(target, &command, None, send_by).await?
            }
        };
        kari::parse_importer_output(&output).map_err(wire)
    }

    /// Reads the counter, signs, sends; again after a stale counter (bounded). The output of
    /// the card's verified reply. `parts`: an IMPORT_WK's RecipientInfos.
    async fn send_signed(
        &self,
        target: &Target<'_>,
        command: &Command<'_>,
        parts: Option<&[Vec<u8>]>,
        send_by: SendBy,
    ) -> Result<Vec<u8>, BackendError> {
        let wire =
            |e: WireError| BackendError::Protocol(format!("crypto unit {}: {e}", target.hsm_id));
        for attempt in 1..=STALE_COUNTER_ATTEMPTS_MAX {
            let attributes = self.admin(target, ep11::ADMQ_DOM_ATTRS, &[]).await?;
            let values = ep11::parse_attributes(&attributes.output).map_err(wire)?;
            let listed = self.admin(target, ep11::ADMQ_DOMADMIN, &[]).await?;
            let installed = ep11::parse_ski_list(&listed.output).map_err(wire)?;
            let needed = if command.threshold {
                values.signature_threshold as usize
            } else {
                1
            };
            let signers = self.choose(target, command, &installed, needed)?;
            let address = Address {
                admin_domain: attributes.admin_domain.clone(),
                module_id: attributes.module_id.clone(),
                counter: attributes.counter.clone(),
            };
            let signed = match parts {
                Some(parts) => {
                    admin::import_request(target.domain, &address, parts, &signers).await
                }
                None => {
                    let block = admin::block(command.id, &address, &command.input);
                    admin::signed_request(target.domain, &block, &signers).await
                }
            }
            .map_err(|e| sign_error(command.name, e))?;
            tracing::info!(
                "crypto unit {}: {} ({:#04x}) with counter {}, signed by {}",
                target.hsm_id,
                command.name,
                command.id,
                hex::encode(address.next_counter()),
                signers
                    .iter()
                    .map(|s| s.administrator())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match self.send_once(target, command, &signed, send_by).await? {
                Ok(output) => return Ok(output),
                Err(PIN_EXPIRED) if attempt < STALE_COUNTER_ATTEMPTS_MAX => {
                    tracing::info!(
                        "crypto unit {}: {}: the transaction counter was stale (3-163); reading it again and signing again (attempt {})",
                        target.hsm_id,
                        command.name,
                        attempt + 1
                    );
                }
                Err(code) if code == PIN_EXPIRED => {
                    return Err(BackendError::Refused {
                        operation: command.name.into(),
                        reason: format!(
                            "crypto unit {}: the transaction counter was stale {STALE_COUNTER_ATTEMPTS_MAX} times in a row (EP11 3-163): someone else is sending commands to this domain at the same time. The card did not act on these commands; stop the other tool, then run apply again",
                            target.hsm_id
                        ),
                    });
                }
                Err(_) => unreachable!("send_once returns only the stale counter as a code"),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// The signers of one command: installed administrators with a signature key, the
    /// preferred ones first; refused before anything is sent when there are too few.
    fn choose<'a>(
        &'a self,
        target: &Target<'_>,
        command: &Command<'_>,
        installed: &[[u8; 32]],
        needed: usize,
    ) -> Result<Vec<&'a dyn Signer>, BackendError> {
        let mut ordered: Vec<&dyn Signer> = Vec::new();
        for name in command.preferred {
            if let Some(signer) = self.signers.iter().find(|s| s.administrator() == name) {
                ordered.push(signer.as_ref());
            }
        }
        for signer in &self.signers {
            if !ordered
                .iter()
                .any(|s| s.administrator() == signer.administrator())
            {
                ordered.push(signer.as_ref());
            }
        }
        let (usable, strangers): (Vec<&dyn Signer>, Vec<&dyn Signer>) = ordered
            .into_iter()
            .partition(|s| installed.contains(&s.ski()));
        if usable.len() >= needed {
            return Ok(usable.into_iter().take(needed.max(1)).collect());
        }
        let names = |list: &[&dyn Signer]| {
            list.iter()
                .map(|s| s.administrator().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(BackendError::NotSent {
            operation: command.name.into(),
            why: format!(
                "crypto unit {} needs {needed} signature(s) from its installed administrators, and the desired file's signature_keys give {} ({}){}. Add signature keys of installed administrators to signature_keys",
                target.hsm_id,
                usable.len(),
                if usable.is_empty() {
                    "none".to_string()
                } else {
                    names(&usable)
                },
                if strangers.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} is not installed on it (its key's SKI is not among the unit's administrators)",
                        names(&strangers)
                    )
                }
            ),
        })
    }

    /// One POST of a signed command, never repeated. `Ok(Ok(output))` done; `Ok(Err(163))`
    /// a stale counter (the card did not act); any other refusal is `Refused`; a lost or
    /// untrustworthy answer is `Transient` (outcome unknown).
    async fn send_once(
        &self,
        target: &Target<'_>,
        command: &Command<'_>,
        payload: &[u8],
        send_by: SendBy,
    ) -> Result<Result<Vec<u8>, u32>, BackendError> {
        self.authenticate().await?;
        let url = self
            .transport
            .url(&["v1", "tke", target.instance, "hsms", target.hsm_id]);
        let request = format!(
            "{} to crypto unit {} ({})",
            command.name,
            target.hsm_id,
            request_name(&Method::POST, &url)
        );
        let unknown = |why: String| {
            BackendError::Transient(format!("{request}: {why}; the outcome is unknown"))
        };
        let body = Zeroizing::new(
            json!({ "request": htp::request(target.cm, target.domain, payload) }).to_string(),
        );
        let answer = {
            let _alone = self.modules.one_at_a_time(&target.module).await;
            self.transport
                .call(
                    Method::POST,
                    url.clone(),
                    Some(body),
                    COMMAND_TIMEOUT_MS,
                    send_by,
                )
                .await
        };
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(Failure::Network(why)) => return Err(unknown(format!("no answer ({why})"))),
            Err(Failure::Final(BackendError::Protocol(why))) => return Err(unknown(why)),
            Err(Failure::Final(error)) => return Err(error),
            Err(Failure::Status(answer)) => {
                let status = answer.status;
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    return Err(unknown(format!("{status} {}", answer.message)));
                }
                return Err(self.transport.read_error(
                    Failure::Status(answer),
                    &Method::POST,
                    &url,
                ));
            }
        };
        let reply: super::Reply = serde_json::from_slice(&bytes)
            .map_err(|_| unknown("the reply is not {\"response\": …}".into()))?;
        let payload = htp::parse_response(&reply.response).map_err(|e| unknown(e.message))?;
        let (block, signer_infos) = match admin_reply(&payload, target.domain) {
            Ok(Some(parts)) => parts,
            // The card refused before it looked at the command (unsigned): nothing done.
            Ok(None) | Err(_) => {
                return match reply_value(&payload) {
                    // Where the card puts a stale counter is not published (tke-wire.md
                    // §5.1): here too it means "read again and sign again".
                    Some(PIN_EXPIRED) => Ok(Err(PIN_EXPIRED)),
                    Some(value) if value != 0 => {
                        Err(refused(command, target, WireError::ep11(value, None)))
                    }
                    _ => Err(unknown("the reply cannot be read".into())),
                };
            }
        };
        let key = self.epoch_key(target, false).await?;
        if oa::verify_reply(&signer_infos, &block, &key).is_err() {
            let key = self.epoch_key(target, true).await?;
            if let Err(e) = oa::verify_reply(&signer_infos, &block, &key) {
                return Err(unknown(format!(
                    "crypto module {} sent a reply that is not signed by it ({e}), also after re-reading its OA certificates, so mkplan does not believe it. Something between mkplan and the crypto module may be changing replies: stop and ask IBM support",
                    target.module
                )));
            }
        }
        let fields = der::octet_strings(&block, "the m_admin response block")
            .map_err(|e| unknown(e.message))?;
        let [cmd, _, _, _, code, output] = fields[..] else {
            return Err(unknown("the response block does not have 6 fields".into()));
        };
        let code =
            u32_of(code).ok_or_else(|| unknown("the response code is not 4 bytes".into()))?;
        if code == PIN_EXPIRED {
            return Ok(Err(PIN_EXPIRED));
        }
        if code != 0 {
            let reason = output.get(..4).and_then(u32_of);
            return Err(refused(command, target, WireError::ep11(code, reason)));
        }
        if u32_of(cmd) != Some(command.id) {
            return Err(unknown(format!(
                "the reply answers command {:#x}, not {:#x}",
                u32_of(cmd).unwrap_or_default(),
                command.id
            )));
        }
        Ok(Ok(output.to_vec()))
    }
}

/// Whether an m_admin reply is the card's "not found" (96/60).
fn not_found(payload: &[u8]) -> bool {
    let Ok(fields) = der::octet_strings(payload, "the m_admin response") else {
        return false;
    };
    let Some(Ok(block)) = fields
        .get(3)
        .map(|b| der::octet_strings(b, "the m_admin response block"))
    else {
        return false;
    };
    matches!(block[..], [_, _, _, _, code, output]
        if u32_of(code) == Some(ep11::CERTIFICATE_NOT_FOUND.0)
            && output.get(..4).and_then(u32_of) == Some(ep11::CERTIFICATE_NOT_FOUND.1))
}

fn u32_of(bytes: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_be_bytes)
}

/// The xcpAdminRsp's return value (field 3), when it can be read.
fn reply_value(payload: &[u8]) -> Option<u32> {
    let fields = der::octet_strings(payload, "the m_admin response").ok()?;
    fields.get(2).and_then(|f| u32_of(f))
}

/// The block and SignerInfos of an m_admin reply whose return value is 0; `None` when the
/// card refused without a block.
type ReplyParts = (Vec<u8>, Vec<u8>);

fn admin_reply(payload: &[u8], domain: u32) -> Result<Option<ReplyParts>, WireError> {
    let fields = der::octet_strings(payload, "the m_admin response")?;
    if fields.len() < 3
        || u32_of(fields[0]) != Some(ep11::M_ADMIN)
        || u32_of(fields[1]) != Some(domain)
    {
        return Err(WireError::new(
            "the m_admin response is not for this domain",
        ));
    }
    if u32_of(fields[2]) != Some(0) || fields.len() < 4 {
        return Ok(None);
    }
    Ok(Some((
        fields[3].to_vec(),
        fields.get(4).map(|f| f.to_vec()).unwrap_or_default(),
    )))
}

fn refused(command: &Command<'_>, target: &Target<'_>, error: WireError) -> BackendError {
    BackendError::Refused {
        operation: command.name.into(),
        reason: format!(
            "crypto unit {} refused it: {error}. The card did not act on it",
            target.hsm_id
        ),
    }
}

fn sign_error(operation: &str, error: SignError) -> BackendError {
    BackendError::NotSent {
        operation: operation.into(),
        why: format!("a signature could not be made: {error}"),
    }
}

fn operation_name(operation: &Operation<'_>) -> &'static str {
    match operation {
        Operation::LoadNewMk { .. } => "load_new_mk",
        Operation::CommitNewMk { .. } => "commit_new_mk",
        Operation::ClearNewMk { .. } => "clear_new_mk",
        Operation::RewrapKeyStorage { .. } => "rewrap_key_storage",
        Operation::SetImmediate { .. } => "set_immediate",
    }
}
