//! Ceremony steps: what an operator does by hand for a step (in the TKE application with
//! smart cards, or with the TKE CLI), who must be there, the state that must show afterwards
//! and how mkplan checks it. Pure: the executor shows these at the prompt, the runbook prints
//! them all.

use serde::Serialize;

use super::{Action, Plan, Step};

/// How the `present` entry for signing administrators begins.
pub const ADMINISTRATORS: &str = "administrators";

/// Who holds one key part of an instance's new master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyPartHolder {
    /// A name to call: the smart card's holder, or the key part file.
    pub holder: String,
    /// The reader (a pattern of its PC/SC name) the holder's EP11 smart card goes in, for key
    /// parts on smart cards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart_card_reader: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instruction {
    pub step: String,
    pub action: Action,
    pub instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `[zone].[host].[CM].[domain]`, as the TKE application and CLI show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// With the TKE CLI plug-in (after selecting the crypto unit with `cryptounit-add`).
    pub tke_cli: String,
    /// In the TKE application, with smart cards.
    pub tke_application: String,
    /// Who must be present.
    pub present: Vec<String>,
    /// PIN entries on the PIN pad (one per smart card used).
    pub pin_entries: u32,
    /// The live state that must show when the step is done.
    pub expected: String,
    /// How mkplan checks it before journaling the step as done.
    pub verified_by: String,
    /// Key part cards this step reads, with the readers they go in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<KeyPartHolder>,
}

/// The instruction for `step` of `plan`; `holders` are the key part holders of its instance.
pub fn instruction(plan: &Plan, step: &Step, holders: &[KeyPartHolder]) -> Instruction {
    let instance = plan.instances.iter().find(|i| i.id == step.instance);
    let target = instance
        .map(|i| i.target_verification_pattern.as_str().to_string())
        .unwrap_or_default();
    let unit = step
        .unit
        .as_deref()
        .and_then(|u| instance.and_then(|i| i.units.iter().find(|c| c.hsm_id == u)));
    let location = unit.map(|u| u.location.clone());
    let domain = location
        .as_deref()
        .and_then(|l| l.rsplit('.').next())
        .map(|d| d.trim_matches(['[', ']']).to_string())
        .unwrap_or_default();
    let on_unit = |what: &str| {
        format!(
            "{what} on crypto unit {} (domain {domain})",
            step.unit.as_deref().unwrap_or_default()
        )
    };
    let signers = format!(
        "{ADMINISTRATORS} giving {} signature(s) (signature key on a smart card in the signature reader, or a key file)",
        step.signatures
    );
    let cards: Vec<&KeyPartHolder> = holders
        .iter()
        .filter(|h| h.smart_card_reader.is_some())
        .collect();
    let (tke_cli, tke_application, present, pin_entries, expected, verified_by) = match step.action {
        Action::LoadNewMk => (
            if cards.is_empty() {
                "ibmcloud tke cryptounit-mk-load (enter each key part file's password when asked)".to_string()
            } else {
                "(not with the TKE CLI: key parts on smart cards load in the TKE application)".to_string()
            },
            format!(
                "{}: Domains tab → select the domain → Domain Keys → New master key register → Load{}",
                on_unit("Load the new master key"),
                if cards.is_empty() {
                    "; key parts in files load with the TKE CLI only".to_string()
                } else {
                    format!(
                        "; insert each key part card when asked ({})",
                        cards
                            .iter()
                            .map(|c| format!(
                                "{}'s card in the reader matching {:?}",
                                c.holder,
                                c.smart_card_reader.as_deref().unwrap_or_default()
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
            holders
                .iter()
                .map(|h| format!("key part holder {}", h.holder))
                .chain([signers.clone()])
                .collect::<Vec<_>>(),
            cards.len() as u32 + 1,
            format!("new master key register Full Uncommitted, verification pattern {target}"),
            "reads the unit's registers until the new register holds the desired verification pattern; any other pattern is reported, and the next plan clears it and loads again".to_string(),
        ),
        Action::CommitNewMk => (
            "ibmcloud tke cryptounit-mk-commit".to_string(),
            format!("{}: Domain Keys → New master key register → Commit", on_unit("Commit the new master key")),
            vec![signers.clone()],
            step.signatures,
            format!("new master key register Full Committed, verification pattern {target}"),
            "reads the unit's registers until the new register is Full Committed with the desired verification pattern".to_string(),
        ),
        Action::ClearNewMk => (
            "ibmcloud tke cryptounit-mk-clrnew".to_string(),
            format!("{}: Domain Keys → New master key register → Clear", on_unit("Clear the new master key register")),
            vec![signers.clone()],
            1,
            "new master key register Empty".to_string(),
            "reads the unit's registers until the new register is Empty".to_string(),
        ),
        Action::SetImmediate => (
            "ibmcloud tke cryptounit-mk-setimm".to_string(),
            format!("{}: Domain Keys → Current master key register → Set, immediate", on_unit("Set immediate")),
            vec![signers.clone()],
            1,
            format!("current master key register Valid with verification pattern {target}, new register Empty"),
            "reads the unit's registers until the current register holds the desired verification pattern".to_string(),
        ),
        Action::RewrapKeyStorage => (
            format!("ibmcloud tke cryptounit-mk-rotate (service instance {})", step.instance),
            "Not in the TKE application: the rewrap is a service operation; use the TKE CLI".to_string(),
            vec!["the operator with IAM access to the service instance".to_string()],
            0,
            "the service reports: KMS CRK rewrap successful, waiting on cryptounit-mk-setimm".to_string(),
            "reads the service's rotation status; where the service reports none, asks whether that message appeared and journals the answer as the operator's evidence".to_string(),
        ),
        Action::RemoveUnit => (
            "(nothing to run: the crypto unit leaves the selection)".to_string(),
            "(nothing to do)".to_string(),
            Vec::new(),
            0,
            "no change on the unit".to_string(),
            "nothing to check".to_string(),
        ),
    };
    Instruction {
        step: step.id.clone(),
        action: step.action,
        instance: step.instance.clone(),
        unit: step.unit.clone(),
        location,
        tke_cli,
        tke_application,
        present,
        pin_entries,
        expected,
        verified_by,
        cards: if step.action == Action::LoadNewMk {
            cards.into_iter().cloned().collect()
        } else {
            Vec::new()
        },
    }
}
