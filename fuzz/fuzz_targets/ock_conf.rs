//! `opencryptoki.conf`, read by the `zcrypt:` backend to list the EP11 and CCA tokens on a
//! domain group's APQNs (`ock_conf::token_slots`). A file that reads gives its slots once each,
//! in slot order, at lines of the file; one that does not names a line of the file, in a
//! message that holds none of the input raw.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::zcrypt::ock_conf::token_slots;
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // pkcsslotd's lexer counts every '\n'; a last line without one is a line too.
    let lines = text.split('\n').count();
    match token_slots(text) {
        Err(error) => {
            assert!(
                (1..=lines).contains(&error.line),
                "an error at line {} of a {lines}-line file: {}",
                error.line,
                error.why
            );
            assert_inert_line("opencryptoki.conf", &error.why);
        }
        Ok(slots) => {
            for pair in slots.windows(2) {
                assert!(pair[0].slot < pair[1].slot, "slots out of order: {slots:?}");
            }
            for slot in &slots {
                assert!((1..=lines).contains(&slot.line), "{slot:?} of {lines} lines");
                if let Some((name, line)) = &slot.confname {
                    assert!(!name.is_empty(), "{slot:?}");
                    assert!((1..=lines).contains(line), "{slot:?} of {lines} lines");
                }
            }
        }
    }
});
