//! The opencryptoki.conf reader, against openCryptoki's own file and what pkcsslotd refuses.

use super::*;

/// openCryptoki's own default file (usr/sbin/pkcsslotd/opencryptoki.conf), shortened.
const SHIPPED: &str = "version opencryptoki-3.27

# The following defaults are defined:
#       hwversion = \"0.0\"
#       slot 0
#       {
#          confname = myccatok.conf
#       }
disable-event-support
statistics (on, implicit)
slot 0
{
stdll = libpkcs11_tpm.so
tokversion = 3.12
}

slot 2
{
stdll = libpkcs11_cca.so
confname = ccatok.conf
tokversion = 3.12
}

slot 4 {
stdll = /usr/lib64/opencryptoki/stdll/libpkcs11_ep11.so.0   # the EP11 token
description = \"EP11 token, # not a comment
spanning lines\"
confname = \"payroll ep11.conf\"
hwversion = 1.0
}
slot 5
{
stdll = libpkcs11_ep11.so
}
";

#[test]
fn the_shipped_file_gives_its_ep11_and_cca_slots_with_their_confnames() {
    let slots = token_slots(SHIPPED).unwrap();
    let shown: Vec<(u64, usize, GroupMode, Option<&str>)> = slots
        .iter()
        .map(|s| {
            (
                s.slot,
                s.line,
                s.mode,
                s.confname.as_ref().map(|c| c.0.as_str()),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (2, 17, GroupMode::Cca, Some("ccatok.conf")),
            (4, 24, GroupMode::Ep11, Some("payroll ep11.conf")),
            (5, 31, GroupMode::Ep11, None),
        ]
    );
    assert_eq!(slots[1].confname.as_ref().unwrap().1, 28);
}

#[test]
fn an_ep11_token_reads_its_config_from_ock_ep11_token_dir_then_falls_back_to_the_default() {
    let folder = Path::new("/etc/opencryptoki");
    let dir = Path::new("/srv/ep11");
    let shown = |token_dir, confname| -> Vec<String> {
        ep11_config_candidates(folder, token_dir, confname)
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    assert_eq!(
        shown(Some(dir), Some("payroll.conf")),
        ["/srv/ep11/payroll.conf", "/srv/ep11/ep11tok.conf"]
    );
    // The file name part of an absolute confname, in the variable's folder.
    assert_eq!(
        shown(Some(dir), Some("/opt/x/payroll.conf")),
        ["/srv/ep11/payroll.conf", "/srv/ep11/ep11tok.conf"]
    );
    assert_eq!(shown(Some(dir), None), ["/srv/ep11/ep11tok.conf"]);
    assert_eq!(shown(Some(dir), Some("")), ["/srv/ep11/ep11tok.conf"]);
    // Without the variable: the config folder, no second try.
    assert_eq!(
        shown(None, Some("payroll.conf")),
        ["/etc/opencryptoki/payroll.conf"]
    );
    assert_eq!(shown(None, None), ["/etc/opencryptoki/ep11tok.conf"]);
}

#[test]
fn what_pkcsslotd_would_not_read_is_an_error_at_its_line() {
    for (text, line, needle) in [
        (
            "slot 1\n{\n  stdll = libpkcs11_ep11.so\n",
            3,
            "the file ends where `}` belongs",
        ),
        (
            "slot 1 {\n  confname =\n  ep11.conf\n}\n",
            2,
            "the value of `confname =`",
        ),
        (
            "slot 1 {\n  stdll = \"libpkcs11_ep11.so\n}\n",
            2,
            "never closed",
        ),
        (
            "slot 1 {}\nslot 1 {}\n",
            2,
            "described twice (first at line 1)",
        ),
        (
            "slot 1 { confname = ../x.conf }\n",
            1,
            "neither an absolute path",
        ),
        ("slot 1 { stdll = lib@x }\n", 1, "\"@\" has no meaning"),
        ("slot 01 { }\n", 1, "\"01\" is not a number"),
        ("}\n", 1, "`}` where a keyword belongs"),
        // Adversarial round 11z, F1: pkcsslotd takes only its own keys in a slot, spelled
        // so, with values of their kind; a slot it refuses was read as "no token here".
        (
            "slot 3 {\n  STDLL = libpkcs11_ep11.so\n  confname = ep11tok3.conf\n}\n",
            2,
            "key \"STDLL\" that pkcsslotd does not take",
        ),
        (
            "slot 3 {\n  sdtll = libpkcs11_ep11.so\n}\n",
            2,
            "does not take",
        ),
        (
            "slot 3 {\n  stdll = 5\n  confname = ep11tok3.conf\n}\n",
            2,
            "`stdll` has a value pkcsslotd does not take",
        ),
        (
            "slot 3 {\n  stdll = libpkcs11_ep11.so\n  tokversion = soon\n}\n",
            3,
            "a version is MAJOR.MINOR",
        ),
        (
            "slot 3 {\n  stdll = libpkcs11_ep11.so\n  extra { }\n}\n",
            1,
            "not `key = value`",
        ),
        // ... and at the top of the file only its own forms: a misspelled `slot` hid a token
        // the same way.
        (
            "version opencryptoki-3.27\nSlot 3 {\n  stdll = libpkcs11_ep11.so\n}\n",
            2,
            "`Slot 3` (a slot is `slot N {…}`, spelled so) at the top of the file",
        ),
        (
            "tokens {\n  slot 3 { stdll = libpkcs11_ep11.so }\n}\n",
            1,
            "a block `tokens {…}`",
        ),
        ("stdll = libpkcs11_ep11.so\n", 1, "`stdll =` at the top"),
        (
            "disable_event_support\n",
            1,
            "a keyword `disable_event_support`",
        ),
        ("stats (on)\n", 1, "a list `stats (…)`"),
    ] {
        let error = token_slots(text).unwrap_err();
        assert_eq!(error.line, line, "{text:?}: {error:?}");
        assert!(error.why.contains(needle), "{text:?}: {error:?}");
    }
}
