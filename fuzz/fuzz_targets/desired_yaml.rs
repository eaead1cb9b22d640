//! The desired key-state file (`plans/*.yaml`): `model::parse_desired`, as `plan`, `apply`
//! and `validate` read it, and its `backend:` line read as `BackendSpec::parse` reads it. A
//! desired file under review in a pull request may hold anything.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mkplan::backend::BackendSpec;
use mkplan::model::desired::{INSTANCES_MAX, KEY_PARTS_MAX, KEY_PARTS_MIN};
use mkplan::model::{KeyPartSource, parse_desired};
use mkplan_fuzz::{assert_inert_line, assert_input_error};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_desired("plans/fuzz.yaml", text, Path::new("plans")) {
        Err(error) => assert_input_error("desired file", &error),
        Ok(desired) => {
            if let Some(backend) = &desired.backend {
                match BackendSpec::parse(backend, Some(Path::new("plans"))) {
                    Err(e) => assert_inert_line("backend", &e),
                    Ok(BackendSpec::Http(url)) => {
                        assert!(!url.chars().any(mkplan::quote::is_control_like));
                    }
                    Ok(_) => {}
                }
            }
            // What the checks promise the planner.
            assert!((1..=INSTANCES_MAX).contains(&desired.instances.len()));
            for instance in &desired.instances {
                assert_eq!(instance.id, instance.id.to_ascii_lowercase());
                assert!(instance.administrators.len() >= usize::from(instance.signature_threshold));
                let parts = &instance.master_key.key_parts;
                assert!(parts.is_empty() || (KEY_PARTS_MIN..=KEY_PARTS_MAX).contains(&parts.len()));
                for part in parts {
                    let shown = match part {
                        KeyPartSource::File { written, .. } => written,
                        KeyPartSource::SmartCard { holder, .. } => holder,
                    };
                    assert!(!shown.chars().any(mkplan::quote::is_control_like));
                }
            }
        }
    }
});
