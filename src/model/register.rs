//! The two master key registers of a crypto unit, with the statuses operators see in
//! `ibmcloud tke cryptounit-mk`: new `Empty | Full Uncommitted | Full Committed`, current
//! `Empty | Valid`. A non-empty register always has a verification pattern; the types make an
//! empty register with a VP (or a full one without) unrepresentable.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::VerificationPattern;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NewRegister {
    Empty,
    FullUncommitted(VerificationPattern),
    FullCommitted(VerificationPattern),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CurrentRegister {
    Empty,
    Valid(VerificationPattern),
}

impl NewRegister {
    pub fn status(&self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::FullUncommitted(_) => "Full Uncommitted",
            Self::FullCommitted(_) => "Full Committed",
        }
    }

    pub fn verification_pattern(&self) -> Option<&VerificationPattern> {
        match self {
            Self::Empty => None,
            Self::FullUncommitted(vp) | Self::FullCommitted(vp) => Some(vp),
        }
    }

    pub fn holds(&self, vp: &VerificationPattern) -> bool {
        self.verification_pattern() == Some(vp)
    }

    pub fn committed(&self) -> Option<&VerificationPattern> {
        match self {
            Self::FullCommitted(vp) => Some(vp),
            _ => None,
        }
    }
}

impl CurrentRegister {
    pub fn status(&self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Valid(_) => "Valid",
        }
    }

    pub fn verification_pattern(&self) -> Option<&VerificationPattern> {
        match self {
            Self::Empty => None,
            Self::Valid(vp) => Some(vp),
        }
    }

    pub fn holds(&self, vp: &VerificationPattern) -> bool {
        self.verification_pattern() == Some(vp)
    }
}

fn fmt_register(
    f: &mut fmt::Formatter<'_>,
    status: &str,
    vp: Option<&VerificationPattern>,
) -> fmt::Result {
    match vp {
        None => f.write_str(status),
        Some(vp) if f.alternate() => write!(f, "{status} {vp}"),
        Some(vp) => write!(f, "{status} {}…", vp.short()),
    }
}

/// `{}` shows a short VP for tables, `{:#}` the whole VP.
impl fmt::Display for NewRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_register(f, self.status(), self.verification_pattern())
    }
}

impl fmt::Display for CurrentRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_register(f, self.status(), self.verification_pattern())
    }
}

/// The YAML and JSON form: `{ status: "Full Committed", verification_pattern: "…" }`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterForm {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verification_pattern: Option<VerificationPattern>,
}

fn from_form<T, E: serde::de::Error>(
    form: RegisterForm,
    allowed: &str,
    build: impl Fn(&str, Option<VerificationPattern>) -> Option<Result<T, String>>,
) -> Result<T, E> {
    match build(form.status.as_str(), form.verification_pattern) {
        Some(result) => result.map_err(E::custom),
        None => Err(E::custom(format!(
            "unknown register status {}; this register's statuses are {allowed}",
            crate::quote::quote(&form.status)
        ))),
    }
}

fn full(status: &str, vp: Option<VerificationPattern>) -> Result<VerificationPattern, String> {
    vp.ok_or_else(|| {
        format!(
            "a register with status {} needs a verification_pattern",
            crate::quote::quote(status)
        )
    })
}

fn empty<T>(value: T, vp: Option<VerificationPattern>) -> Result<T, String> {
    match vp {
        None => Ok(value),
        Some(_) => {
            Err("an Empty register has no verification_pattern; remove it or fix the status".into())
        }
    }
}

impl Serialize for NewRegister {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RegisterForm {
            status: self.status().into(),
            verification_pattern: self.verification_pattern().cloned(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NewRegister {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = RegisterForm::deserialize(deserializer)?;
        from_form(
            form,
            "Empty, Full Uncommitted, Full Committed",
            |status, vp| match status {
                "Empty" => Some(empty(Self::Empty, vp)),
                "Full Uncommitted" => Some(full(status, vp).map(Self::FullUncommitted)),
                "Full Committed" => Some(full(status, vp).map(Self::FullCommitted)),
                _ => None,
            },
        )
    }
}

impl Serialize for CurrentRegister {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RegisterForm {
            status: self.status().into(),
            verification_pattern: self.verification_pattern().cloned(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CurrentRegister {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = RegisterForm::deserialize(deserializer)?;
        from_form(form, "Empty, Valid", |status, vp| match status {
            "Empty" => Some(empty(Self::Empty, vp)),
            "Valid" => Some(full(status, vp).map(Self::Valid)),
            _ => None,
        })
    }
}
