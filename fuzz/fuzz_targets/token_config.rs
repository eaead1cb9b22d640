//! An EP11 or CCA token's config file (`ep11tok.conf`, `ccatok.conf`, or the slot's
//! `confname`), read by the `zcrypt:` backend for the token's APQN allow list
//! (`token_config::allow_list`) and its master key pins (`parse_token_pins`: EXPECTED_WKVP,
//! EXPECTED_MKVPS). An error names a line of the file, in a message that holds none of the
//! input raw; a pin is one word as written, lower case, its quotes and a `0x` after them
//! taken off (whether it is a verification pattern is for its reader to judge).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::zcrypt::token_config::{allow_list, parse_token_pins};
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    if let Err((line, why)) = allow_list(text) {
        assert!(
            (1..=lines).contains(&line),
            "an error at line {line} of a {lines}-line file: {why}"
        );
        assert_inert_line("token config", &why);
    }
    for (mk_type, pin) in parse_token_pins(text) {
        assert!(
            !pin.chars().any(|c| c.is_ascii_uppercase() || c.is_whitespace())
                && !pin.ends_with('"'),
            "{mk_type:?} pin {pin:?} is not one lower-case word without its closing quote"
        );
    }
});
