//! What the `zcrypt:` backend reads from the tools it runs and the files they keep, all text a
//! tool prints or a file holds: `zkey list` (`zkey_list::parse_list`), `zkey validate`,
//! `zkey-cryptsetup validate`, an application's key check, `pkcshsm_mk_change list`, a
//! domain's sysfs `mkvps`, and `cryptsetup luksDump` (its JSON metadata and its unbound key).
//! Each reads the same input; none may panic, and every message it builds from the input is
//! bounded and holds none of it raw.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::zcrypt::mkvps::Mkvps;
use mkplan::backend::zcrypt::{luks2, ock_list, stores, zkey_list};
use mkplan::model::registers::MkType;
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inert = |what: &str, result: Result<(), String>| {
        if let Err(why) = result {
            assert_inert_line(what, &why);
        }
    };
    inert("zkey list", zkey_list::parse_list(text).map(drop));
    inert("zkey validate", stores::parse_validate(text).map(drop));
    inert(
        "zkey-cryptsetup validate",
        stores::parse_luks2_validate(text).map(drop),
    );
    for mk_type in [MkType::Wk, MkType::Aes, MkType::Apka, MkType::Asym, MkType::Sym] {
        inert(
            "application key check",
            stores::parse_application_check(mk_type, text).map(drop),
        );
    }
    inert("pkcshsm_mk_change list", ock_list::parse_ock_list(text).map(drop));
    inert("mkvps", Mkvps::parse(text).map(drop).map_err(|e| e.to_string()));
    inert("luksDump JSON", luks2::unbound_keyslot(text).map(drop));
    match luks2::unbound_key(text) {
        Err(why) => assert_inert_line("luksDump unbound key", &why),
        Ok(key) => assert!(!key.is_empty() && key.len() <= 1024, "a key of {} bytes", key.len()),
    }
});
