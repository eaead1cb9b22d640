//! `signature_keys:` in a desired file: per administrator, where the key that signs the TKE
//! commands comes from (tke-wire.md §6): a TKE CLI signature key file and the variable that
//! holds its password (none: a no-echo prompt on the terminal), or a key of the signing
//! service at `TKE_SIGNSERV_URL` and the variable that holds its token. Only `tke:` backends
//! use it (other backends sign nothing: they ignore it). Parsing is pure, as the rest of the
//! desired file's; errors name file, line and column.
//!
//! ```yaml
//! signature_keys:
//!   alice: { file: sigkeys/alice.json, password_env: MKPLAN_SIGKEY_ALICE }
//!   bob: { signing_service: bob-p521, token_env: MKPLAN_SIGNSERV_TOKEN_BOB }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use super::{DesiredState, InputError};
use crate::quote::quote;

/// Administrators a desired file may give signature keys for (8 per domain, many instances).
pub const SIGNATURE_KEYS_MAX: usize = 64;
/// Longest signing-service key name.
pub const KEY_NAME_LEN_MAX: usize = 100;

/// Where one administrator's signature key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureKeySource {
    File {
        /// Resolved against the desired file's folder.
        file: PathBuf,
        /// As written, for messages.
        written: String,
        password_env: Option<String>,
    },
    SigningService {
        key: String,
        token_env: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureKey {
    pub administrator: String,
    pub source: SignatureKeySource,
    /// Line and column of the administrator's entry.
    pub position: (u64, u64),
}

#[derive(Deserialize)]
struct RawTop {
    #[serde(default)]
    signature_keys: Option<Spanned<BTreeMap<String, Spanned<RawSignatureKey>>>>,
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    backend: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    instances: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignatureKey {
    #[serde(default)]
    file: Option<Spanned<String>>,
    #[serde(default)]
    password_env: Option<Spanned<String>>,
    #[serde(default)]
    signing_service: Option<Spanned<String>>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
}

fn at<T>(spanned: &Spanned<T>) -> (u64, u64) {
    (spanned.referenced.line(), spanned.referenced.column())
}

/// The `signature_keys:` of the desired file `text` (already parsed into `state`).
pub fn parse(
    file: &str,
    text: &str,
    folder: &Path,
    state: &DesiredState,
) -> Result<Vec<SignatureKey>, InputError> {
    if !state.signature_keys_written {
        return Ok(Vec::new());
    }
    let raw: RawTop = super::from_yaml_str(text).map_err(|e| {
        InputError::from_yaml(
            file,
            text,
            &e,
            &[(
                "signature_keys",
                "a mapping of administrator names to `{ file: PATH, password_env: VARIABLE }` or `{ signing_service: KEY, token_env: VARIABLE }`",
            )],
            "correct signature_keys at that place; its format is in docs/tke.md",
        )
    })?;
    let Some(map) = raw.signature_keys else {
        return Ok(Vec::new());
    };
    let error = |at: (u64, u64), message: String, fix: &str| {
        InputError::new(file, message).at(text, at.0, at.1).fix(fix)
    };
    if map.value.len() > SIGNATURE_KEYS_MAX {
        return Err(error(
            at(&map),
            format!(
                "{} signature keys, over the limit of {SIGNATURE_KEYS_MAX}",
                map.value.len()
            ),
            "give the signature keys of the administrators who sign this rotation",
        ));
    }
    let administrators: Vec<&str> = state
        .instances
        .iter()
        .flat_map(|i| i.administrators.iter().map(String::as_str))
        .collect();
    let mut keys = Vec::with_capacity(map.value.len());
    for (name, entry) in map.value {
        let entry_at = at(&entry);
        if !administrators.contains(&name.as_str()) {
            return Err(error(
                entry_at,
                format!(
                    "signature key for {}, who is not an administrator of any instance",
                    quote(&name)
                ),
                "give signature keys only for administrators listed under an instance's `administrators:`",
            ));
        }
        let raw = entry.value;
        let env = |value: Option<Spanned<String>>, what: &str| match value {
            // Placed, but its line not shown: it may hold the secret.
            Some(env) if !is_env_name(&env.value) => Err({
                let (line, column) = at(&env);
                error(
                    (line, column),
                    format!(
                        "{what} is not an environment variable name (its value is not shown, in case it is a secret)"
                    ),
                    &format!(
                        "{what} names the variable that holds the secret (letters, digits, _), never the secret itself"
                    ),
                )
                .located(line, column)
            }),
            other => Ok(other.map(|s| s.value)),
        };
        let source = match (raw.file, raw.signing_service) {
            (Some(path), None) => {
                if raw.token_env.is_some() {
                    return Err(error(
                        entry_at,
                        "token_env goes with signing_service, not with file".into(),
                        "a signature key file takes password_env",
                    ));
                }
                if path.value.is_empty() || path.value.chars().any(crate::quote::is_control_like) {
                    return Err(error(
                        at(&path),
                        "the signature key file's path is empty or holds a control character"
                            .into(),
                        "write the path on one line with printable characters",
                    ));
                }
                SignatureKeySource::File {
                    file: folder.join(&path.value),
                    written: path.value,
                    password_env: env(raw.password_env, "password_env")?,
                }
            }
            (None, Some(key)) => {
                if raw.password_env.is_some() {
                    return Err(error(
                        entry_at,
                        "password_env goes with file, not with signing_service".into(),
                        "a signing service key takes token_env",
                    ));
                }
                let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
                if key.value.is_empty()
                    || key.value.len() > KEY_NAME_LEN_MAX
                    || !key.value.chars().all(unreserved)
                {
                    return Err(error(
                        at(&key),
                        format!(
                            "signing service key name {} is not 1 to {KEY_NAME_LEN_MAX} letters, digits or -._~",
                            quote(&key.value)
                        ),
                        "give the key's name as the signing service knows it",
                    ));
                }
                SignatureKeySource::SigningService {
                    key: key.value,
                    token_env: env(raw.token_env, "token_env")?,
                }
            }
            _ => {
                return Err(error(
                    entry_at,
                    format!(
                        "the signature key of {} needs exactly one of file: and signing_service:",
                        quote(&name)
                    ),
                    "write `{ file: sigkeys/NAME.json, password_env: VARIABLE }` or `{ signing_service: KEY, token_env: VARIABLE }`",
                ));
            }
        };
        keys.push(SignatureKey {
            administrator: name,
            source,
            position: entry_at,
        });
    }
    Ok(keys)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIRED: &str = "version: 1
instances:
  - id: 5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b
    crypto_units: all
    signature_threshold: 2
    revocation_threshold: 2
    administrators: [alice, bob]
    master_key:
      verification_pattern: \"57c060b114f5a20a4347cd12e326ebd6b98c5bf07b48e7f0fbeb4c1900000000\"
";

    fn parsed(keys: &str) -> Result<Vec<SignatureKey>, String> {
        let text = format!("{DESIRED}signature_keys:\n{keys}");
        let folder = Path::new("plans");
        let state =
            crate::model::parse_desired("d.yaml", &text, folder).map_err(|e| e.to_string())?;
        parse("d.yaml", &text, folder, &state).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_are_files_or_signing_service_keys_of_administrators() {
        let keys = parsed(
            "  alice: { file: sigkeys/alice.json, password_env: PW_ALICE }\n  bob: { signing_service: bob-p521 }\n",
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0].source,
            SignatureKeySource::File {
                file: PathBuf::from("plans/sigkeys/alice.json"),
                written: "sigkeys/alice.json".into(),
                password_env: Some("PW_ALICE".into()),
            }
        );
        assert_eq!(keys[0].position.0, 11);
        let stranger = parsed("  carol: { file: c.json }\n").unwrap_err();
        assert!(stranger.contains("d.yaml:11:10"), "{stranger}");
        assert!(stranger.contains("not an administrator"), "{stranger}");
        let both = parsed("  alice: { file: a.json, signing_service: a }\n").unwrap_err();
        assert!(
            both.contains("exactly one of file: and signing_service:"),
            "{both}"
        );
        let secret = parsed("  alice: { file: a.json, password_env: \"hunter 2\" }\n").unwrap_err();
        assert!(
            secret.contains("not an environment variable name"),
            "{secret}"
        );
        let unknown = parsed("  alice: { file: a.json, pasword_env: X }\n").unwrap_err();
        assert!(unknown.contains("pasword_env"), "{unknown}");
    }
}
