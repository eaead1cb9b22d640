//! A key part file (`mkplan keypart new`), read by `plan`, `validate` and `apply` from the
//! path a desired file names, which may be any file: `keypart::parse_file`. A file that parses
//! reads back the same from its JSON, and its KDF cost is within the limits `open` enforces
//! (the KDF itself, Argon2id at 64 MiB, is too slow to run per input; it is not fuzzed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::keypart::{KeyPartFile, check_kdf_cost, parse_file};
use mkplan_fuzz::assert_input_error;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_file("keyparts/fuzz.json", text) {
        Err(error) => assert_input_error("key part file", &error),
        Ok(file) => {
            check_kdf_cost(&file.kdf).expect("parse_file checks the KDF cost");
            let json = serde_json::to_string_pretty(&file).expect("a key part file serializes");
            let again: KeyPartFile = parse_file("keyparts/fuzz.json", &json)
                .unwrap_or_else(|e| panic!("the file as written does not read back: {e}"));
            assert_eq!(again, file);
        }
    }
});
