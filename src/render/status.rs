//! The live register table, laid out like `ibmcloud tke cryptounit-mk`, with the unit's type,
//! location, mode and thresholds beside it.

use std::fmt::Write;

use super::table::fitted;
use crate::model::LiveFleet;

pub fn status(live: &LiveFleet, backend: &str) -> String {
    status_fitted(live, backend, None)
}

/// `status` with each table wrapped to `width` columns (a terminal's).
pub fn status_fitted(live: &LiveFleet, backend: &str, width: Option<u16>) -> String {
    let mut out = format!("Live state from {backend}\n\n");
    for instance in &live.instances {
        let _ = writeln!(
            out,
            "SERVICE INSTANCE {} ({}), rewrap status: {}",
            instance.id,
            instance.region,
            instance.rewrap_status.describe()
        );
        let mut rows = vec![
            [
                "CRYPTO UNIT NUM",
                "HSM ID",
                "TYPE",
                "LOCATION",
                "MODE",
                "SIG/REV THRESHOLD",
                "NEW MK STATUS",
                "NEW MK VERIFICATION PATTERN",
                "CURRENT MK STATUS",
                "CURRENT MK VERIFICATION PATTERN",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for (number, unit) in instance.crypto_units.iter().enumerate() {
            let vp = |v: Option<&crate::model::VerificationPattern>| {
                v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
            };
            rows.push(vec![
                (number + 1).to_string(),
                unit.hsm_id.clone(),
                unit.unit_type.to_string(),
                unit.location.clone(),
                unit.mode.as_str().into(),
                format!("{}/{}", unit.signature_threshold, unit.revocation_threshold),
                unit.new_register.status().into(),
                vp(unit.new_register.verification_pattern()),
                unit.current_register.status().into(),
                vp(unit.current_register.verification_pattern()),
            ]);
        }
        out.push_str(&fitted(&rows, "", width));
        out.push('\n');
    }
    out
}
