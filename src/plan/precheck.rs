//! The pre-checks of a rotation (domain.md), run on every instance before anything is planned.
//! Each failing check becomes a `Refusal` naming the check, the crypto units and their values.
//! The check on current registers depends on whether the rewrap ran, so it lives in `diff`.

use std::collections::{BTreeMap, BTreeSet};

use super::refusal::{Check, Refusal, UnitValue};
use crate::model::live::UNITS_PER_INSTANCE_MAX;
use crate::model::{CryptoUnit, DesiredInstance, LiveInstance, Mode, Ski};

pub(crate) fn pre_checks(desired: &DesiredInstance, live: &LiveInstance) -> Vec<Refusal> {
    if let Some(refusal) = selection(live) {
        return vec![refusal];
    }
    let mut refusals = Vec::new();
    refusals.extend(admin_mode(live));
    // Imprint units have no thresholds or administrators: the check above names them, and the
    // checks below look only at the units that could run register commands.
    let admins: Vec<&CryptoUnit> = live
        .crypto_units
        .iter()
        .filter(|u| u.mode == Mode::Admin)
        .collect();
    refusals.extend(signature_thresholds_equal(live, &admins));
    refusals.extend(thresholds_match_desired(desired, live, &admins));
    refusals.extend(common_administrators(desired, live, &admins));
    refusals
}

fn selection(live: &LiveInstance) -> Option<Refusal> {
    let count = live.crypto_units.len();
    if count == 0 || count > UNITS_PER_INSTANCE_MAX {
        return Some(
            Refusal::new(
                &live.id,
                Check::Selection,
                format!("the service reports {count} crypto units for this instance; a rotation selects every one of 1 to {UNITS_PER_INSTANCE_MAX}"),
            )
            .fix("check the instance id in the desired file and the backend"),
        );
    }
    let mut seen = BTreeSet::new();
    let twice: Vec<UnitValue> = live
        .crypto_units
        .iter()
        .filter(|u| !seen.insert(u.hsm_id.to_ascii_lowercase()))
        .map(|u| UnitValue::new(u, "reported more than once"))
        .collect();
    (!twice.is_empty()).then(|| {
        Refusal::new(
            &live.id,
            Check::Selection,
            "the same crypto unit is reported twice, so no selection can hold each unit once",
        )
        .units(twice)
        .fix("report this to the backend's owner; the live state is inconsistent")
    })
}

fn admin_mode(live: &LiveInstance) -> Option<Refusal> {
    let imprint: Vec<UnitValue> = live
        .crypto_units
        .iter()
        .filter(|u| u.mode == Mode::Imprint)
        .map(|u| UnitValue::new(u, "mode imprint"))
        .collect();
    (!imprint.is_empty()).then(|| {
        Refusal::new(
            &live.id,
            Check::AdminMode,
            "crypto units in imprint mode refuse register commands",
        )
        .units(imprint)
        .fix("take these crypto units out of imprint mode (install the administrators and set the thresholds with `ibmcloud tke cryptounit-admin-add` and `cryptounit-thrhld-set`), then plan again")
    })
}

fn signature_thresholds_equal(live: &LiveInstance, admins: &[&CryptoUnit]) -> Option<Refusal> {
    let values: BTreeSet<u8> = admins.iter().map(|u| u.signature_threshold).collect();
    (values.len() > 1).then(|| {
        Refusal::new(
            &live.id,
            Check::SignatureThresholdsEqual,
            format!(
                "the crypto units have signature thresholds {}",
                join(values.iter())
            ),
        )
        .units(
            admins
                .iter()
                .map(|u| UnitValue::new(u, format!("signature threshold {}", u.signature_threshold)))
                .collect(),
        )
        .fix("set the same signature threshold on every crypto unit (`ibmcloud tke cryptounit-thrhld-set`), then plan again")
    })
}

fn thresholds_match_desired(
    desired: &DesiredInstance,
    live: &LiveInstance,
    admins: &[&CryptoUnit],
) -> Option<Refusal> {
    let wrong: Vec<UnitValue> = admins
        .iter()
        .filter(|u| {
            u.signature_threshold != desired.signature_threshold
                || u.revocation_threshold != desired.revocation_threshold
        })
        .map(|u| {
            UnitValue::new(
                u,
                format!(
                    "signature threshold {}, revocation threshold {}",
                    u.signature_threshold, u.revocation_threshold
                ),
            )
        })
        .collect();
    (!wrong.is_empty()).then(|| {
        Refusal::new(
            &live.id,
            Check::ThresholdsMatchDesired,
            format!(
                "the desired file asks for signature threshold {} and revocation threshold {}",
                desired.signature_threshold, desired.revocation_threshold
            ),
        )
        .units(wrong)
        .fix("mkplan does not change thresholds yet: correct the desired file, or set the thresholds with `ibmcloud tke cryptounit-thrhld-set`")
    })
}

fn common_administrators(
    desired: &DesiredInstance,
    live: &LiveInstance,
    admins: &[&CryptoUnit],
) -> Option<Refusal> {
    if admins.is_empty() {
        return None;
    }
    // An administrator is common when the same name with the same key (SKI) is on every unit.
    let mut keys: BTreeMap<&str, BTreeSet<&Ski>> = BTreeMap::new();
    for unit in admins {
        for admin in &unit.administrators {
            keys.entry(admin.name.as_str())
                .or_default()
                .insert(&admin.ski);
        }
    }
    let common: BTreeSet<&str> = keys
        .iter()
        .filter(|(name, skis)| {
            skis.len() == 1 && admins.iter().all(|u| u.administrator(name).is_some())
        })
        .map(|(name, _)| *name)
        .collect();
    let missing: Vec<&String> = desired
        .administrators
        .iter()
        .filter(|name| !common.contains(name.as_str()))
        .collect();
    let threshold = admins
        .iter()
        .map(|u| u.signature_threshold)
        .max()
        .unwrap_or(0);
    if missing.is_empty() && common.len() >= usize::from(threshold) {
        return None;
    }
    let units = admins
        .iter()
        .map(|u| {
            let names: Vec<String> = u
                .administrators
                .iter()
                .map(|a| format!("{} ({}…)", a.name, &a.ski.as_str()[..8]))
                .collect();
            UnitValue::new(u, format!("administrators: {}", names.join(", ")))
        })
        .collect();
    let detail = if missing.is_empty() {
        format!(
            "only {} administrators ({}) are installed on every crypto unit with the same key; the signature threshold is {threshold}",
            common.len(),
            join(common.iter())
        )
    } else {
        format!(
            "administrators {} from the desired file are not installed on every crypto unit with the same key (common to all: {})",
            join(missing.iter()),
            if common.is_empty() {
                "none".into()
            } else {
                join(common.iter())
            }
        )
    };
    Some(
        Refusal::new(&live.id, Check::CommonAdministrators, detail)
            .units(units)
            .fix("install the same administrators (same signature key) on every crypto unit with `ibmcloud tke cryptounit-admin-add`, or correct the desired file"),
    )
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
