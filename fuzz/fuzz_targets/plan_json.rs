//! A saved plan (`plan --out`, read by `apply PLANFILE` and `show`), which may come from
//! anyone: parsed, its step graph checked, then every view `show` offers rendered, none of
//! them with a control character (an escape, a newline inside a word) taken from the file. A
//! plan that parses reads back the same from its JSON (`render::json` is also what the journal
//! hashes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::error::Error;
use mkplan::fuzzing::parse_plan_file;
use mkplan::quote::is_control_like;
use mkplan::render;
use mkplan_fuzz::{assert_inert_line, assert_input_error};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_plan_file(text) {
        Err(Error::Input(error)) => assert_input_error("plan file", &error),
        Err(other) => assert_inert_line("plan file", &other.to_string()),
        Ok(plan) => {
            let json = render::json(&plan);
            let again = parse_plan_file(&json)
                .unwrap_or_else(|e| panic!("the plan as written does not read back: {e}\n{json}"));
            assert_eq!(again, plan, "the plan changed through its JSON");
            // `show` prints these as they are: no word of the file may drive the terminal.
            for (view, shown) in [
                ("text", render::text(&plan, "saved plan plan.json")),
                ("markdown", render::markdown(&plan, "saved plan plan.json")),
                ("dot", render::dot(&plan)),
            ] {
                if let Some(c) = shown.chars().find(|c| *c != '\n' && is_control_like(*c)) {
                    panic!("the {view} view shows the control character {c:?}:\n{shown}");
                }
            }
        }
    }
});
