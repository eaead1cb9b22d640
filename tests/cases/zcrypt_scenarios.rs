//! The `zcrypt:` backend's scenario table, through the binary, on the fake Crypto Express
//! platform: each row is a world, a domain group file and the actions (the fake TKE's
//! ceremony steps, the fake zkey) that bring it to a mid state; then what `plan` shows and
//! what `apply` does, with zero incidents after every apply. Refusals name their check and
//! the APQNs or values, and run nothing: the world's truth is byte for byte what it was.
//! tests/cases/zcrypt.rs holds the harness and the first rows (fresh EP11, CCA set then
//! from OLD, an offline APQN, apply killed after each tool step); zcrypt_interruptions.rs the
//! stops, kills and tool crashes at every step.

use crate::cases::zcrypt::{
    LUKS2_STORE, LUKS2_VOLUME, NEW, OLD, Operator, World, ep11_group, mkplan, world_yaml,
};

pub(crate) const CCA_OLD: &str = "c1c1c1c1c1c1c1c1";
pub(crate) const CCA_OLDER: &str = "c0c0c0c0c0c0c0c0";
pub(crate) const CCA_NEW: &str = "e5e5e5e5e5e5e5e5";
/// A wrapping key no register of the worlds holds.
const OTHER: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";

pub(crate) fn ep11(world: &str) -> World {
    World::with(world, &ep11_group(), "EP11", NEW)
}

pub(crate) fn ep11_world() -> World {
    ep11(&world_yaml(true))
}

/// The harness's world with key `archive`'s LUKS2 volume /dev/dasdb1, and the group
/// declaring it with its key file.
pub(crate) fn luks2_world() -> World {
    World::with(
        &format!("{}{LUKS2_VOLUME}", world_yaml(true)),
        &format!("{}{LUKS2_STORE}", ep11_group()),
        "EP11",
        NEW,
    )
}

/// Two CCA APQNs holding AES `CCA_OLD` (OLD `CCA_OLDER`) and a zkey key under `key_mkvp`.
fn cca_world(key_mkvp: &str) -> World {
    let (world, group) = cca_texts(key_mkvp);
    World::with(&world, &group, "AES", CCA_NEW)
}

/// The world and group files of [`cca_world`]: key `db-data` is the world's last, and
/// `stores:` the group's last key, so a caller can append to either.
pub(crate) fn cca_texts(key_mkvp: &str) -> (String, String) {
    let domain = |card: &str| {
        format!(
            "  - card: \"{card}\"\n    type: CEX7C\n    serialnr: \"93AAC0{card}\"\n    domains:\n      - domain: \"0006\"\n        AES: {{ current: \"{CCA_OLD}\", old: \"{CCA_OLDER}\" }}\n"
        )
    };
    let world = format!(
        "latency_ms: 0\ncards:\n{}{}zkey:\n  - name: db-data\n    key_type: CCA-AESDATA\n    apqns: [\"05.0006\", \"06.0006\"]\n    mkvp: \"{key_mkvp}\"\n",
        domain("05"),
        domain("06")
    );
    let group = format!(
        "domain_group: ledger
version: 1
backend: zcrypt:w/sys
apqns: [05.0006, 06.0006]
master_keys:
  - {{ type: AES, verification_pattern: \"{CCA_NEW}\" }}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - zkey_key: db-data
"
    );
    (world, group)
}

impl World {
    /// Runs one of the world's fake tools as an operator would, pointed at the world; its
    /// stdout.
    pub(crate) fn tool(&self, tool: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(self.root.join("w/bin").join(tool))
            .current_dir(&self.root)
            .env("SYSFS_ROOT", self.root.join("w/sys"))
            .env("ZKEY_REPOSITORY", self.root.join("w/zkey"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `zkey-cryptsetup ARGS --key-file keys/dasdb1.key`, as an operator would by hand.
    pub(crate) fn cryptsetup(&self, args: &[&str]) {
        let key_file = self.root.join("keys/dasdb1.key");
        let mut all = args.to_vec();
        all.extend(["--key-file", key_file.to_str().unwrap()]);
        self.tool("zkey-cryptsetup", &all);
    }

    /// The world's truth: registers, stores, open operations, history, incidents.
    pub(crate) fn truth(&self) -> Vec<u8> {
        std::fs::read(self.root.join("w/world.json")).unwrap()
    }

    /// Nothing left to do, no staged copy left behind, no incident.
    pub(crate) fn assert_nothing_left(&self) {
        self.assert_plan_empty();
        for entry in std::fs::read_dir(self.root.join("w/zkey")).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().ends_with(".renc"),
                "{name:?} left staged"
            );
        }
        self.assert_no_incidents();
    }

    /// Gives card `card` another serial number, as a swapped card shows (truth and sysfs).
    pub(crate) fn swap_card(&self, card: &str, serial: &str) {
        let mut truth: serde_json::Value = serde_json::from_slice(&self.truth()).unwrap();
        for c in truth["cards"].as_array_mut().unwrap() {
            if c["card"] == card {
                c["serialnr"] = serial.into();
            }
        }
        std::fs::write(self.root.join("w/world.json"), truth.to_string()).unwrap();
        std::fs::write(
            self.root
                .join(format!("w/sys/devices/ap/card{card}/serialnr")),
            format!("{serial}\n"),
        )
        .unwrap();
    }
}

pub(crate) fn ep11_load_commit(world: &World, apqn: &str) {
    world.tke("load", apqn);
    world.tke("commit", apqn);
}

/// NEW loaded and committed on both APQNs, then `zkey reencipher --to-new --staged` of the
/// keys `filter` selects.
fn ep11_loaded_then_staged(world: &World, filter: &[&str]) {
    ep11_load_commit(world, "03.0006");
    ep11_load_commit(world, "04.0006");
    let mut args = vec![
        "reencipher",
        "--apqns",
        "03.0006,04.0006",
        "--to-new",
        "--staged",
    ];
    args.extend(filter);
    world.tool("zkey", &args);
}

pub(crate) struct Converges {
    pub(crate) name: &'static str,
    pub(crate) world: fn() -> World,
    pub(crate) mid: fn(&World),
    pub(crate) steps: Vec<&'static str>,
}

/// The EP11 change of the harness's world from the staging on, in plan order.
const FROM_STAGING: [&str; 6] = [
    "stage_reencipher:archive",
    "stage_reencipher:backup",
    "set_immediate@03.0006",
    "set_immediate@04.0006",
    "complete_reencipher:archive",
    "complete_reencipher:backup",
];

#[test]
fn zcrypt_scenarios_from_each_mid_state_plan_what_remains_and_apply_converges() {
    let rows = [
        Converges {
            name: "fresh CCA change, re-encipher then set",
            world: || cca_world(CCA_OLD),
            mid: |_| {},
            steps: vec![
                "load_new_mk@05.0006",
                "load_new_mk@06.0006",
                "stage_reencipher:db-data",
                "set_immediate@05.0006",
                "set_immediate@06.0006",
                "complete_reencipher:db-data",
            ],
        },
        Converges {
            name: "NEW loaded and committed on one APQN only",
            world: ep11_world,
            mid: |w| ep11_load_commit(w, "03.0006"),
            steps: [
                &["load_new_mk@04.0006", "commit_new_mk@04.0006"][..],
                &FROM_STAGING,
            ]
            .concat(),
        },
        Converges {
            name: "NEW loaded but not committed on one APQN",
            world: ep11_world,
            mid: |w| {
                ep11_load_commit(w, "03.0006");
                w.tke("load", "04.0006");
            },
            steps: [&["commit_new_mk@04.0006"][..], &FROM_STAGING].concat(),
        },
        Converges {
            name: "one store staged, the other not",
            world: ep11_world,
            mid: |w| ep11_loaded_then_staged(w, &["--name", "backup"]),
            steps: vec![
                "stage_reencipher:archive",
                "set_immediate@03.0006",
                "set_immediate@04.0006",
                "complete_reencipher:archive",
                "complete_reencipher:backup",
            ],
        },
        Converges {
            name: "set on one APQN only (a change stopped mid-set)",
            world: ep11_world,
            mid: |w| {
                ep11_loaded_then_staged(w, &[]);
                w.tke("set", "03.0006");
            },
            steps: vec![
                "set_immediate@04.0006",
                "complete_reencipher:archive",
                "complete_reencipher:backup",
            ],
        },
        Converges {
            name: "fresh EP11 change with a LUKS2 volume declared",
            world: luks2_world,
            mid: |_| {},
            steps: [
                &[
                    "load_new_mk@03.0006",
                    "commit_new_mk@03.0006",
                    "load_new_mk@04.0006",
                    "commit_new_mk@04.0006",
                    "stage_reencipher:/dev/dasdb1",
                    "complete_reencipher:/dev/dasdb1",
                ][..],
                &FROM_STAGING,
            ]
            .concat(),
        },
        Converges {
            name: "a LUKS2 volume completed by hand after its key's change, the zkey keys not",
            world: luks2_world,
            mid: |w| {
                ep11_loaded_then_staged(w, &[]);
                w.cryptsetup(&["reencipher", "/dev/dasdb1", "--to-new", "--staged"]);
                w.tke("set", "03.0006");
                w.tke("set", "04.0006");
                w.cryptsetup(&["reencipher", "/dev/dasdb1", "--complete"]);
            },
            steps: vec!["complete_reencipher:archive", "complete_reencipher:backup"],
        },
        Converges {
            name: "NEW holds another key than the desired one, and no store is under it",
            world: || {
                ep11(&world_yaml(true).replacen(
                    "new: empty",
                    &format!("new: {{ committed: \"{OTHER}\" }}"),
                    1,
                ))
            },
            mid: |_| {},
            steps: [
                &[
                    "clear_new_mk@03.0006",
                    "load_new_mk@03.0006",
                    "commit_new_mk@03.0006",
                    "load_new_mk@04.0006",
                    "commit_new_mk@04.0006",
                ][..],
                &FROM_STAGING,
            ]
            .concat(),
        },
    ];
    assert_each_converges(rows);
}

/// Each row: its mid state shows no incident, `plan` shows its steps, and `apply` converges
/// with nothing left and no incident.
/// The rows run side by side, each on a world of its own.
pub(crate) fn assert_each_converges(rows: impl IntoIterator<Item = Converges>) {
    crate::cases::parallel::each(3, rows, |row| {
        let world = (row.world)();
        (row.mid)(&world);
        world.assert_no_incidents();
        let mut planned = world.planned();
        let mut expected: Vec<String> = row.steps.iter().map(ToString::to_string).collect();
        // Independent steps may be listed in either order; what runs is settled by reading.
        planned.sort();
        expected.sort();
        assert_eq!(planned, expected, "row {:?}", row.name);
        let (code, stderr) = world.apply();
        assert_eq!(code, Some(0), "row {:?}: {stderr}", row.name);
        world.assert_nothing_left();
    });
}

pub(crate) struct Refused {
    pub(crate) name: &'static str,
    pub(crate) world: fn() -> World,
    pub(crate) mid: fn(&World),
    pub(crate) check: &'static str,
    /// What the message must name: the APQNs, stores and values.
    pub(crate) names: Vec<String>,
}

#[test]
fn zcrypt_scenarios_refused_name_their_check_and_values_and_run_nothing() {
    let rows = [
        Refused {
            name: "a zkey key left staged from an earlier change",
            world: || {
                ep11(&format!(
                    "{}    renc_mkvp: \"{}\"\n",
                    world_yaml(true),
                    &OTHER[..32]
                ))
            },
            mid: |_| {},
            check: "no_earlier_staged_stores",
            names: vec!["archive".into(), OTHER[..32].into()],
        },
        Refused {
            // Regression: found by `mkplan drill`, which lost `archive` in every run.
            name: "a zkey key associated with the APQNs but left out of the file",
            world: || {
                World::with(
                    &world_yaml(true),
                    &ep11_group().replace("  - zkey_keys: associated", "  - zkey_key: backup"),
                    "EP11",
                    NEW,
                )
            },
            mid: |_| {},
            check: "undeclared_stores",
            names: vec![
                "zkey key \"archive\" on APQN(s) 03.0006,04.0006".into(),
                "- zkey_key: archive".into(),
            ],
        },
        Refused {
            // Regression: found by `mkplan drill` on plans/zcrypt-world.yaml, whose disk-root
            // key's LUKS2 header copy every run lost.
            name: "a zkey key with a LUKS2 volume the group file does not declare",
            world: || ep11(&format!("{}{LUKS2_VOLUME}", world_yaml(true))),
            mid: |_| {},
            check: "luks2_volumes",
            names: vec![
                "zkey key \"archive\" has LUKS2 volume /dev/dasdb1".into(),
                "- luks2_volume: {device: DEVICE, key_file: PATH}".into(),
            ],
        },
        Refused {
            name: "a LUKS2 volume declared with a key file that opens none of its key slots",
            world: || {
                World::with(
                    &format!("{}{LUKS2_VOLUME}", world_yaml(true)),
                    &format!("{}{LUKS2_STORE}", ep11_group()).replace("dasdb1.key", "wrong.key"),
                    "EP11",
                    NEW,
                )
            },
            mid: |w| std::fs::write(w.root.join("keys/wrong.key"), "not it\n").unwrap(),
            check: "stores_observable",
            names: vec![
                "LUKS2 volume \"/dev/dasdb1\"".into(),
                "Failed to get volume key of device".into(),
                "keys/wrong.key".into(),
            ],
        },
        Refused {
            name: "a LUKS2 volume left staged from an earlier change under another key",
            world: luks2_world,
            mid: |w| {
                for (action, vp) in [("load", Some(OTHER)), ("commit", None)] {
                    let mut args = vec!["sim", "zcrypt", "tke", "--world-dir", "w", action];
                    args.extend(["--apqns", "03.0006,04.0006", "--type", "EP11"]);
                    args.extend(vp.iter().flat_map(|vp| ["--vp", vp]));
                    assert!(mkplan(&w.root, &args).status.success());
                }
                w.cryptsetup(&["reencipher", "/dev/dasdb1", "--to-new", "--staged"]);
                let clear = [
                    "sim",
                    "zcrypt",
                    "tke",
                    "--world-dir",
                    "w",
                    "clear",
                    "--apqns",
                    "03.0006,04.0006",
                    "--type",
                    "EP11",
                ];
                assert!(mkplan(&w.root, &clear).status.success());
            },
            check: "no_earlier_staged_stores",
            names: vec![
                format!(
                    "LUKS2 volume \"/dev/dasdb1\" has a copy staged under {}",
                    &OTHER[..32]
                ),
                "cryptsetup luksKillSlot".into(),
            ],
        },
        Refused {
            name: "an APQN outside the group that zkey-cryptsetup could stage the volume with",
            world: || {
                let card = format!(
                    "  - card: \"05\"\n    type: CEX8P\n    domains:\n      - domain: \"0006\"\n        WK: {{ current: \"{OLD}\", new: {{ committed: \"{OTHER}\" }} }}\nzkey:\n"
                );
                World::with(
                    &format!("{}{LUKS2_VOLUME}", world_yaml(true)).replacen("zkey:\n", &card, 1),
                    &format!("{}{LUKS2_STORE}", ep11_group()),
                    "EP11",
                    NEW,
                )
            },
            mid: |_| {},
            check: "luks2_volumes",
            names: vec![
                "APQN 05.0006, outside the group".into(),
                "LUKS2 volume \"/dev/dasdb1\"".into(),
                OTHER[..32].into(),
            ],
        },
        Refused {
            name: "a CCA key still under OLD before a second change",
            world: || cca_world(CCA_OLDER),
            mid: |_| {},
            check: "keys_under_old",
            names: vec!["db-data".into(), CCA_OLDER.into()],
        },
        Refused {
            name: "a card swapped between two runs of one change",
            world: ep11_world,
            mid: |w| {
                let (code, stderr) = w.apply_as(|_, _| Operator::Stops);
                assert_eq!(code, Some(1), "{stderr}");
                w.swap_card("04", "93AABC04FFFFFFFF");
            },
            check: "card_serial_numbers",
            names: vec!["card 04 was serial 93AABC0400000002, now 93AABC04FFFFFFFF".into()],
        },
        Refused {
            name: "APQNs with different CURRENT wrapping keys",
            world: || {
                ep11(&world_yaml(true).replacen(
                    &format!("WK: {{ current: \"{OLD}\" }}"),
                    &format!("WK: {{ current: \"{OTHER}\" }}"),
                    1,
                ))
            },
            mid: |_| {},
            check: "one_current_mk",
            names: vec![
                format!("03.0006 CURRENT {}", &OLD[..32]),
                format!("04.0006 CURRENT {}", &OTHER[..32]),
            ],
        },
    ];
    assert_each_refused(rows);
}

/// Each row: `plan` and `apply` refuse with exit 3 naming the check and every name, and run
/// nothing: no ceremony step shown, no tool run, the world's truth byte for byte as it was.
/// The rows run side by side, each on a world of its own.
pub(crate) fn assert_each_refused(rows: impl IntoIterator<Item = Refused>) {
    crate::cases::parallel::each(3, rows, |row| {
        let world = (row.world)();
        (row.mid)(&world);
        let before = world.truth();
        let plan = world.run(&["plan", "group.yaml"]);
        let stderr = String::from_utf8_lossy(&plan.stderr);
        assert_eq!(plan.status.code(), Some(3), "row {:?}: {stderr}", row.name);
        assert!(
            stderr.contains(&format!("`{}`", row.check)),
            "row {:?}: {stderr}",
            row.name
        );
        for name in &row.names {
            assert!(
                stderr.contains(name),
                "row {:?} lacks {name}: {stderr}",
                row.name
            );
        }
        let (code, stderr) = world.apply();
        assert_eq!(code, Some(3), "row {:?}: {stderr}", row.name);
        assert!(
            stderr.contains(&format!("`{}`", row.check))
                && !stderr.contains("Ceremony step")
                && !stderr.contains("_reencipher: "),
            "row {:?}: {stderr}",
            row.name
        );
        assert_eq!(
            world.truth(),
            before,
            "row {:?} changed the world",
            row.name
        );
        world.assert_no_incidents();
    });
}
