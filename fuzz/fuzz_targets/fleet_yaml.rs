//! The simulator's fleet file (`sim:FLEET.yaml`, `sim serve FLEET.yaml`): `Fleet::parse`.
//! A fleet that parses is written back by the simulator after every command, and must read
//! back the same (`to_yaml` → `parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::sim::Fleet;
use mkplan::model::LiveFleet;
use mkplan_fuzz::assert_input_error;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Fleet::parse("fleet.yaml", text) {
        Err(error) => assert_input_error("fleet file", &error),
        Ok(fleet) => {
            let written = fleet.to_yaml();
            let again = Fleet::parse("fleet.yaml", &written).unwrap_or_else(|e| {
                panic!("the fleet as written does not read back: {e}\n{written}")
            });
            assert_eq!(
                again, fleet,
                "the fleet changed through to_yaml:\n{written}"
            );
            let live = LiveFleet {
                instances: fleet.instances.iter().map(|i| i.live()).collect(),
            };
            let _ = live.fingerprint();
            for instance in &fleet.instances {
                let _ = (
                    instance.mid_rotation(),
                    instance.key_storage_held(),
                    instance.key_storage.rewrap_ms(),
                );
            }
        }
    }
});
