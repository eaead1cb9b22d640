//! Fault injection (`MKPLAN_SIM_FAULTS`, `sim serve --faults`): which mutating operations,
//! counted from 1, crash the process, fail, or lose their response, and a minimum latency.

use std::collections::BTreeSet;

use crate::quote::quote;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub crash_after_op: BTreeSet<u64>,
    pub fail_op: BTreeSet<u64>,
    pub lose_response_op: BTreeSet<u64>,
    pub latency_ms: u64,
    /// `sim serve` (the JSON API) only: an operation whose response is lost
    /// (`lose_response_op`) is answered at once with the transient error, and applied this
    /// many ms later: a slow service that queued the request while its connection was reset.
    /// 0: applied before the response is lost, as without it.
    pub lost_response_lands_after_ms: u64,
    /// `sim serve --protocol tke` only, to test reply verification: from this POSTed request
    /// on, every domain query's reply is changed after the module signed it (a forged reply).
    pub forge_reply_from_op: Option<u64>,
    /// From this request on, the module signs with a new epoch key (and serves its
    /// certificate), as a real module's epoch key changes.
    pub oa_epoch_change_op: Option<u64>,
    /// The module's OA chain ends at a root no client trusts.
    pub oa_unknown_root: bool,
    /// The modules are another simulated service's: their OA chain ends at mkplan's second
    /// test root (trusted with the first under `MKPLAN_TKE_TEST_OA_ROOT`), so that a client
    /// tells the two services apart at one URL.
    pub oa_second_test_root: bool,
    /// `sim serve --protocol tke` only, counted over signed commands (module `tke_card`): the
    /// card answers "stale transaction counter" (3-163) without acting,
    pub stale_counter_command: BTreeSet<u64>,
    /// the command is changed on the way, so its signatures fail (3-192),
    pub tamper_command: BTreeSet<u64>,
    /// the card acts, then the server dies without answering,
    pub crash_after_command: BTreeSet<u64>,
    /// the card acts, then the answer is lost (500),
    pub lose_command_response: BTreeSet<u64>,
    /// the card acts and its reply is changed after it was signed.
    pub forge_command_reply: BTreeSet<u64>,
}

/// Operations we inject faults into at the most, and the longest latency: a typo must not
/// make a test sleep for hours.
pub const FAULT_OP_MAX: u64 = 1_000_000;
pub const LATENCY_MS_MAX: u64 = 60_000;

impl Faults {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut faults = Self::default();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("fault {} has no value; write KEY=N", quote(item)))?;
            let number: u64 = value.trim().parse().map_err(|_| {
                format!(
                    "fault {}: {} is not a whole number",
                    quote(item),
                    quote(value)
                )
            })?;
            let set = match key.trim() {
                "crash_after_op" => &mut faults.crash_after_op,
                "fail_op" => &mut faults.fail_op,
                "lose_response_op" => &mut faults.lose_response_op,
                "stale_counter_command" => &mut faults.stale_counter_command,
                "tamper_command" => &mut faults.tamper_command,
                "crash_after_command" => &mut faults.crash_after_command,
                "lose_command_response" => &mut faults.lose_command_response,
                "forge_command_reply" => &mut faults.forge_command_reply,
                "forge_reply_from_op"
                | "oa_epoch_change_op"
                | "oa_unknown_root"
                | "oa_second_test_root" => {
                    let at = key.trim();
                    let valid = if at == "oa_unknown_root" || at == "oa_second_test_root" {
                        number == 1
                    } else {
                        (1..=FAULT_OP_MAX).contains(&number)
                    };
                    if !valid {
                        return Err(format!(
                            "fault {}: oa_unknown_root and oa_second_test_root take 1, the others an operation from 1 to {FAULT_OP_MAX}",
                            quote(item)
                        ));
                    }
                    match at {
                        "forge_reply_from_op" => faults.forge_reply_from_op = Some(number),
                        "oa_epoch_change_op" => faults.oa_epoch_change_op = Some(number),
                        "oa_second_test_root" => faults.oa_second_test_root = true,
                        _ => faults.oa_unknown_root = true,
                    }
                    continue;
                }
                at @ ("latency_ms" | "lost_response_lands_after_ms") => {
                    if number > LATENCY_MS_MAX {
                        return Err(format!(
                            "{at}={number} is over the limit of {LATENCY_MS_MAX}"
                        ));
                    }
                    if at == "latency_ms" {
                        faults.latency_ms = number;
                    } else {
                        faults.lost_response_lands_after_ms = number;
                    }
                    continue;
                }
                other => {
                    return Err(format!(
                        "unknown fault {}; the faults are crash_after_op, fail_op, lose_response_op and latency_ms (and, for `sim serve`, lost_response_lands_after_ms; for `sim serve --protocol tke`, forge_reply_from_op, oa_epoch_change_op, oa_unknown_root, oa_second_test_root, and over signed commands stale_counter_command, tamper_command, crash_after_command, lose_command_response and forge_command_reply)",
                        quote(other)
                    ));
                }
            };
            if number == 0 || number > FAULT_OP_MAX {
                return Err(format!(
                    "fault {}: operations count from 1 to {FAULT_OP_MAX}",
                    quote(item)
                ));
            }
            set.insert(number);
        }
        Ok(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_four_and_rejects_typos() {
        let faults =
            Faults::parse("crash_after_op=3, fail_op=1,fail_op=4,lose_response_op=2,latency_ms=50")
                .unwrap();
        assert_eq!(faults.crash_after_op, BTreeSet::from([3]));
        assert_eq!(faults.fail_op, BTreeSet::from([1, 4]));
        assert_eq!(faults.lose_response_op, BTreeSet::from([2]));
        assert_eq!(faults.latency_ms, 50);
        let late = Faults::parse("lose_response_op=7,lost_response_lands_after_ms=4000").unwrap();
        assert_eq!(late.lost_response_lands_after_ms, 4_000);
        assert!(Faults::parse("lost_response_lands_after_ms=60001").is_err());
        assert!(
            Faults::parse("crash_afer_op=3")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert!(Faults::parse("fail_op=0").is_err());
        assert!(Faults::parse("fail_op").is_err());
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
    }

    #[test]
    fn parses_the_oa_faults_of_the_tke_front() {
        let faults =
            Faults::parse("forge_reply_from_op=4,oa_epoch_change_op=7,oa_unknown_root=1").unwrap();
        assert_eq!(faults.forge_reply_from_op, Some(4));
        assert_eq!(faults.oa_epoch_change_op, Some(7));
        assert!(faults.oa_unknown_root);
        assert!(Faults::parse("oa_unknown_root=2").is_err());
        assert!(Faults::parse("forge_reply_from_op=0").is_err());
    }
}
