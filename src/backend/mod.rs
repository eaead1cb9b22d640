//! The only code that touches crypto units. Every backend (the embedded simulator today; the
//! simulator over HTTP, the real service over the TKE wire protocol and manual smart-card
//! ceremonies later) implements [`Backend`], so the planner, the executor and the scenario
//! tests are the same on all of them.

#[cfg(feature = "smartcards")]
pub mod cards;
pub mod endpoint;
pub mod http;
mod peer;
pub mod send_by;
pub mod sim;
pub mod tke;
pub mod wiped;
pub mod zcrypt;

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::keypart::{self, Secret32};
use crate::model::{InputError, LiveFleet, VerificationPattern};
pub use send_by::SendBy;

/// What `mkplan sim serve` calls itself in the `Server` header of every answer
/// (`mkplan-sim/VERSION`, docs/http-api.md): a client tells its 404 from another server's.
pub const SIM_SERVER_NAME: &str = "mkplan-sim";

/// One mutating operation on the service. A load carries the key parts themselves: the
/// simulator only needs their combined VP, a real service needs the parts (encrypted for it).
pub enum Operation<'a> {
    LoadNewMk {
        instance: &'a str,
        unit: &'a str,
        key_parts: &'a [Secret32],
    },
    /// Signed by at least the unit's signature threshold of installed administrators.
    CommitNewMk {
        instance: &'a str,
        unit: &'a str,
        verification_pattern: &'a VerificationPattern,
        signers: &'a [String],
    },
    /// Names the VP the new register must still hold (mkplan always does): the service clears
    /// only that key, does nothing on an empty register, and refuses (nothing changed) when
    /// the register holds another key, so a clear that lands late clears nothing loaded since.
    ClearNewMk {
        instance: &'a str,
        unit: &'a str,
        verification_pattern: Option<&'a VerificationPattern>,
    },
    RewrapKeyStorage {
        instance: &'a str,
    },
    /// Names the VP it promotes: the service refuses when the committed register holds
    /// another key.
    SetImmediate {
        instance: &'a str,
        unit: &'a str,
        verification_pattern: &'a VerificationPattern,
        signers: &'a [String],
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The service or crypto unit refused the operation; nothing changed.
    #[error("the service refused {operation}: {reason}")]
    Refused { operation: String, reason: String },
    /// The outcome is unknown or the operation had no effect; read the live state before
    /// deciding anything.
    #[error("transient error: {0}")]
    Transient(String),
    /// The instance is running a rewrap and took no command (HTTP 409 `rewrap_in_progress`):
    /// this one had no effect, and may be taken once the rewrap has ended.
    #[error("{0}")]
    RewrapRunning(String),
    /// mkplan kept the request back: nothing left this process, nothing changed.
    #[error("{operation} was not sent: {why}")]
    NotSent { operation: String, why: String },
    #[error("{0}")]
    Unreachable(String),
    /// A URL mkplan will not send to: malformed, holding a user name or password, or plain
    /// http to another machine while a credential would go there. Nothing was sent.
    #[error("{0}")]
    Endpoint(String),
    #[error(
        "service instance {} is not known to the backend (it knows {})",
        crate::quote::bare(instance),
        known_instances(known)
    )]
    UnknownInstance {
        instance: String,
        known: Vec<String>,
    },
    #[error("{0}")]
    Input(InputError),
    /// The service does not accept the credentials: nothing was done. `renew` names the
    /// variable to set, as this backend reads it (`MKPLAN_TOKEN`, `IBMCLOUD_IAM_TOKEN`…).
    #[error("{problem}. {renew}, then rerun: the journal keeps the place")]
    Unauthorized { problem: String, renew: String },
    /// The service instance or crypto unit is not there.
    #[error("{0}. Check the instance id, the region and the account (and the backend URL)")]
    NotFound(String),
    /// The service answered something mkplan cannot read, or that contradicts itself.
    #[error("{0}")]
    Protocol(String),
}

/// Instances a message about an unknown instance lists at most.
const KNOWN_INSTANCES_SHOWN_MAX: usize = 10;

fn known_instances(known: &[String]) -> String {
    if known.is_empty() {
        return "none".into();
    }
    let mut shown: Vec<String> = known
        .iter()
        .take(KNOWN_INSTANCES_SHOWN_MAX)
        .map(|id| crate::quote::bare(id))
        .collect();
    if known.len() > KNOWN_INSTANCES_SHOWN_MAX {
        shown.push(format!(
            "and {} more",
            known.len() - KNOWN_INSTANCES_SHOWN_MAX
        ));
    }
    shown.join(", ")
}

pub trait Backend: Send + Sync {
    /// How the operator named this backend, for messages.
    fn describe(&self) -> String;

    /// What the journal binds its records to: the same for every way of naming this service
    /// (a fleet file by its canonical path, an endpoint by its URL), different for a copy, a
    /// rehearsal or another endpoint.
    fn identity(&self) -> String {
        self.describe()
    }

    /// Reads the live state of the named service instances.
    fn refresh(
        &self,
        instances: &[String],
    ) -> impl Future<Output = Result<LiveFleet, BackendError>> + Send;

    /// Sends one mutating operation and waits for its outcome. The request leaves only while
    /// `send_by` allows: the check comes as late as the backend can make it.
    fn perform(
        &self,
        operation: &Operation<'_>,
        send_by: SendBy,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Attempts of a read before its transient error is reported, and the first pause between
/// them (doubled each time).
pub const READ_ATTEMPTS_MAX: u32 = 4;
pub const READ_BACKOFF_MS_INITIAL: u64 = 200;

/// Reads the live state, retrying transient errors a bounded number of times. Only reads are
/// retried blindly: a mutating operation with a transient error is settled by a read first.
pub async fn refresh_with_retries<B: Backend>(
    backend: &B,
    instances: &[String],
) -> Result<LiveFleet, BackendError> {
    let mut pause = std::time::Duration::from_millis(READ_BACKOFF_MS_INITIAL);
    let mut attempt = 1;
    loop {
        match backend.refresh(instances).await {
            Err(BackendError::Transient(_)) if attempt < READ_ATTEMPTS_MAX => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Longest backend spec: room for any real path or URL.
pub const BACKEND_SPEC_LEN_MAX: usize = 4096;

/// `--backend SPEC`, the `MKPLAN_BACKEND` variable, or `backend:` in the desired file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    Sim(PathBuf),
    Http(String),
    /// The real service's TKE API in a region (signed commands with `signature_keys:`).
    Tke(String),
    /// Crypto Express adapters of a Linux on IBM Z image below a sysfs root (`zcrypt:/` is
    /// this machine's `/sys`); only a domain group file plans on it (docs/zcrypt.md).
    Zcrypt(PathBuf),
}

impl BackendSpec {
    /// `relative_to` is the desired file's folder when the spec comes from inside that file.
    pub fn parse(spec: &str, relative_to: Option<&Path>) -> Result<Self, String> {
        // A spec reaches plans, the journal and every message about the backend: one that no
        // operator would write is refused here, shown cut and inert.
        if spec.len() > BACKEND_SPEC_LEN_MAX || spec.chars().any(crate::quote::is_control_like) {
            return Err(format!(
                "backend {} is longer than {BACKEND_SPEC_LEN_MAX} bytes or holds control characters (a newline, an escape): use sim:FLEET.yaml, http://HOST:PORT or tke:REGION",
                crate::quote::quote(spec)
            ));
        }
        if let Some(path) = spec.strip_prefix("sim:") {
            if path.is_empty() {
                return Err(
                    "`sim:` needs the fleet file's path, e.g. sim:examples/fleets/three-units.yaml"
                        .into(),
                );
            }
            let path = Path::new(path);
            return Ok(Self::Sim(match relative_to {
                Some(folder) if path.is_relative() => lexically_normal(&folder.join(path)),
                _ => path.to_path_buf(),
            }));
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let authority = spec.split("://").nth(1).unwrap_or_default();
            let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
            if authority.contains('@') {
                // It would reach plans, the journal, the audit trail and error messages.
                return Err(
                    "a backend URL carries no user name or password: give the token in MKPLAN_TOKEN instead"
                        .into(),
                );
            }
            endpoint::parse("backend", spec).map_err(|e| e.to_string())?;
            return Ok(Self::Http(spec.trim_end_matches('/').to_string()));
        }
        if let Some(root) = spec.strip_prefix("zcrypt:") {
            if root.is_empty() {
                return Err("`zcrypt:` needs the sysfs root: zcrypt:/ for this machine, or zcrypt:DIR for a copy of a sysfs tree".into());
            }
            let root = Path::new(root);
            return Ok(Self::Zcrypt(match relative_to {
                Some(folder) if root.is_relative() => lexically_normal(&folder.join(root)),
                _ => root.to_path_buf(),
            }));
        }
        if let Some(region) = spec.strip_prefix("tke:") {
            tke::base_url(region)?;
            return Ok(Self::Tke(region.to_string()));
        }
        Err(format!(
            "unknown backend {}: use sim:FLEET.yaml (the embedded simulator), http://HOST:PORT (mkplan sim serve), tke:REGION (the real service) or zcrypt:SYSFS_ROOT (Crypto Express on Linux)",
            crate::quote::quote(&endpoint::redacted(spec))
        ))
    }
}

/// `plans/../examples/x.yaml` → `examples/x.yaml`, without touching the disk.
pub(crate) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// How to open a backend, besides its spec.
pub struct OpenOptions {
    /// Faults for the embedded simulator (`MKPLAN_SIM_FAULTS`).
    pub faults: sim::Faults,
    /// The bearer token for HTTP backends (`MKPLAN_TOKEN`).
    pub token: Option<http::Token>,
    /// An `http://` backend will be sent key parts (an `apply` that loads them from files):
    /// like a token, they never travel in clear text to another machine.
    pub key_parts: bool,
    /// Requests in flight at most.
    pub parallelism: usize,
    /// For `tke:`: another base URL (a private endpoint, a local emulator).
    pub tke_endpoint: Option<String>,
    /// For `tke:`: where its bearer token comes from.
    pub tke_credentials: tke::Credentials,
    /// For `tke:`, tests only (`MKPLAN_TKE_TEST_OA_ROOT`): trust mkplan's test OA root too.
    pub tke_test_oa_root: bool,
}

/// The backends this build has, behind one type so commands need not be generic.
pub enum AnyBackend {
    Sim(sim::Simulator, String),
    Http(http::HttpBackend),
    Tke(Box<tke::TkeBackend>),
}

impl AnyBackend {
    pub fn open(spec: &BackendSpec, options: OpenOptions) -> Result<Self, BackendError> {
        match spec {
            BackendSpec::Sim(path) => Ok(Self::Sim(
                sim::Simulator::open(path, options.faults)?,
                format!("sim:{}", path.display()),
            )),
            BackendSpec::Http(url) => {
                let mut carried = Vec::new();
                if options.token.is_some() {
                    carried.push("MKPLAN_TOKEN");
                }
                if options.key_parts {
                    carried.push("the key parts this apply would load");
                }
                Ok(Self::Http(http::HttpBackend::new(
                    url,
                    options.token,
                    options.parallelism,
                    &carried,
                )?))
            }
            BackendSpec::Tke(region) => {
                let base = match options.tke_endpoint {
                    Some(endpoint) => endpoint,
                    None => tke::base_url(region).map_err(BackendError::Unreachable)?,
                };
                let mut backend = tke::TkeBackend::new(
                    &format!("tke:{region}"),
                    &base,
                    options.tke_credentials,
                    options.parallelism,
                )?;
                if options.tke_test_oa_root {
                    backend.trust_test_root()?;
                }
                Ok(Self::Tke(Box::new(backend)))
            }
            BackendSpec::Zcrypt(root) => Err(BackendError::Unreachable(format!(
                "zcrypt:{} plans a domain group, not service instances: give a domain group file (first key `domain_group:`, docs/zcrypt.md)",
                root.display()
            ))),
        }
    }

    /// The identity an older mkplan bound this backend's records to, when it was another
    /// (a `tke:` backend's endpoint alone, before the OA root was part of it).
    pub fn legacy_identity(&self) -> Option<String> {
        match self {
            Self::Tke(backend) => Some(backend.legacy_identity()),
            _ => None,
        }
    }

    /// Why this backend cannot change crypto units, if it cannot: `apply` says so before it
    /// touches anything.
    pub fn read_only(&self) -> Option<String> {
        match self {
            Self::Tke(backend) if !backend.sends_commands() => Some(format!(
                "{} sends signed commands only with the administrators' signature keys (`signature_keys:` in the desired file, see docs/tke.md), and none are in use (the desired file gives none, or --manual): every step is a ceremony step. Perform each with the TKE CLI (`ibmcloud tke cryptounit-mk-load`, `cryptounit-mk-commit`, `cryptounit-mk-rotate`, `cryptounit-mk-setimm`) or the TKE application when mkplan shows it; mkplan checks the live state before it journals the step",
                backend.describe()
            )),
            _ => None,
        }
    }
}

impl Backend for AnyBackend {
    fn describe(&self) -> String {
        match self {
            Self::Sim(_, name) => name.clone(),
            Self::Http(backend) => backend.describe(),
            Self::Tke(backend) => backend.describe(),
        }
    }

    fn identity(&self) -> String {
        match self {
            Self::Sim(simulator, _) => format!("sim:{}", simulator.path().display()),
            Self::Http(backend) => backend.identity(),
            Self::Tke(backend) => backend.identity(),
        }
    }

    async fn refresh(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        match self {
            Self::Sim(simulator, _) => simulator.live(instances),
            Self::Http(backend) => backend.refresh(instances).await,
            Self::Tke(backend) => backend.refresh(instances).await,
        }
    }

    async fn perform(
        &self,
        operation: &Operation<'_>,
        send_by: SendBy,
    ) -> Result<(), BackendError> {
        match self {
            Self::Sim(simulator, _) => simulator.perform_by(&to_sim(operation)?, send_by).await,
            Self::Http(backend) => backend.perform(operation, send_by).await,
            Self::Tke(backend) => backend.perform(operation, send_by).await,
        }
    }
}

pub fn to_sim(operation: &Operation<'_>) -> Result<sim::SimOperation, BackendError> {
    let own = |s: &str| s.to_string();
    Ok(match *operation {
        Operation::LoadNewMk {
            instance,
            unit,
            key_parts,
        } => sim::SimOperation::LoadNewMk {
            instance: own(instance),
            unit: own(unit),
            verification_pattern: keypart::combine(key_parts)
                .map_err(|e| BackendError::Refused {
                    operation: "load_new_mk".into(),
                    reason: e.to_string(),
                })?
                .verification_pattern(),
        },
        Operation::CommitNewMk {
            instance,
            unit,
            verification_pattern,
            signers,
        } => sim::SimOperation::CommitNewMk {
            instance: own(instance),
            unit: own(unit),
            verification_pattern: verification_pattern.clone(),
            signers: signers.to_vec(),
        },
        Operation::ClearNewMk {
            instance,
            unit,
            verification_pattern,
        } => sim::SimOperation::ClearNewMk {
            instance: own(instance),
            unit: own(unit),
            verification_pattern: verification_pattern.cloned(),
        },
        Operation::RewrapKeyStorage { instance } => sim::SimOperation::RewrapKeyStorage {
            instance: own(instance),
        },
        Operation::SetImmediate {
            instance,
            unit,
            verification_pattern,
            signers,
        } => sim::SimOperation::SetImmediate {
            instance: own(instance),
            unit: own(unit),
            verification_pattern: verification_pattern.clone(),
            signers: signers.to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A backend whose reads fail transiently a given number of times.
    struct Flaky {
        failures: u32,
        reads: AtomicU32,
    }

    impl Backend for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }

        async fn refresh(&self, _: &[String]) -> Result<LiveFleet, BackendError> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err(BackendError::Transient(format!("read {n} timed out")))
            } else {
                Ok(LiveFleet::default())
            }
        }

        async fn perform(&self, _: &Operation<'_>, _: SendBy) -> Result<(), BackendError> {
            unreachable!("reads only")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_retried_a_bounded_number_of_times() {
        let recovers = Flaky {
            failures: READ_ATTEMPTS_MAX - 1,
            reads: AtomicU32::new(0),
        };
        assert!(refresh_with_retries(&recovers, &[]).await.is_ok());
        let down = Flaky {
            failures: u32::MAX,
            reads: AtomicU32::new(0),
        };
        assert!(matches!(
            refresh_with_retries(&down, &[]).await,
            Err(BackendError::Transient(_))
        ));
        assert_eq!(down.reads.load(Ordering::SeqCst), READ_ATTEMPTS_MAX);
    }
}
