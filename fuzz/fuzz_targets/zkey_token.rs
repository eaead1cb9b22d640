//! A secure key token file in zkey's repository (`NAME.skey`), whose MKVP the `zcrypt:`
//! backend reads to know which master key the key is enciphered under
//! (`stores::token_mkvp`): any bytes, of any key type zkey makes. A token it reads gives the
//! MKVP's bytes in lower-case hex, 8 bytes for CCA, 16 for EP11.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::zcrypt::stores::token_mkvp;

fuzz_target!(|data: &[u8]| {
    for (key_type, len) in [("CCA-AESDATA", 16), ("CCA-AESCIPHER", 16), ("EP11-AES", 32), ("PAES", 0)] {
        match token_mkvp(key_type, data) {
            None => {}
            Some(mkvp) => assert!(
                len > 0
                    && mkvp.len() == len
                    && mkvp.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{key_type}: MKVP {mkvp:?}"
            ),
        }
    }
});
