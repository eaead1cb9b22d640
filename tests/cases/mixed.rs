//! Mixed and unusual live states beyond the scenario table, and the pre-checks that refuse.

use crate::support::*;

crate::on_both_backends! {
    /// After the rewrap (storage under B), u1 is promoted, u2 still stages B, and u3 lost its new
    /// register. The status alone cannot tell this from a rewrap B → A after which u1 lost
    /// its staged A: the plan refuses until the operator attests the rewrap to B. Then u3
    /// must stage B again and be promoted; never rewrap, never clear a register holding B.
    fn unit_that_lost_its_new_register_after_the_rewrap_is_staged_again() {
        let fleet = Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(true)
            .unit(empty(), valid(B))
            .unit(committed(B), valid(A))
            .unit(empty(), valid(A));
        let ws = rotate_to_b(&fleet);
        let refused = ws.plan();
        refused.expect_code(3);
        assert!(refused.stdout.contains("rewrap_evidence"), "{}", refused.stdout);
        let instance = fleet.ids()[0].clone();
        ws.mkplan(&["attest", "rewrap", &instance, "--completed", "--desired", DESIRED])
            .expect_code(0);
        let run = ws.plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            vec![
                on("load_new_mk", u(3)),
                on("commit_new_mk", u(3)),
                on("set_immediate", u(3)),
                on("set_immediate", u(2)),
                on("remove_unit", u(1)),
            ],
        );
        assert!(
            find(&plan, "rewrap_key_storage", None).is_empty(),
            "rewrap after the rewrap"
        );
        // u2 is the only unit whose new register holds B: it must never be cleared.
        assert!(
            find(&plan, "clear_new_mk", None).is_empty(),
            "a new register holding B is cleared"
        );
        // u3 is promoted only once it holds B committed.
        let commit = find(&plan, "commit_new_mk", Some(&u(3)))[0];
        let load = find(&plan, "load_new_mk", Some(&u(3)))[0];
        assert!(depends_on(commit).contains(&id(load)));
        assert!(depends_on(find(&plan, "set_immediate", Some(&u(3)))[0]).contains(&id(commit)));
    }
}

crate::on_both_backends! {
    /// Before the rewrap, u2 holds a wrong key C (Full Uncommitted): clear it and load B there;
    /// the others already stage B.
    fn wrong_key_loaded_before_the_rewrap_is_cleared_and_reloaded() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .unit(committed(B), valid(A))
            .unit(uncommitted(C), valid(A))
            .unit(committed(B), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            [
                vec![
                    on("clear_new_mk", u(2)),
                    on("load_new_mk", u(2)),
                    on("commit_new_mk", u(2)),
                    wide("rewrap_key_storage"),
                ],
                each("set_immediate", 1..=3),
            ]
            .concat(),
        );
        let clear = find(&plan, "clear_new_mk", Some(&u(2)))[0];
        let load = find(&plan, "load_new_mk", Some(&u(2)))[0];
        assert!(
            depends_on(load).contains(&id(clear)),
            "load before the clear"
        );
    }
}

crate::on_both_backends! {
    /// Four instances at four stages of the same rotation in one desired file (the shape of
    /// examples/fleets/several-instances.yaml): each gets its own steps, and step ids are unique.
    fn several_instances_at_different_stages_are_planned_each_on_its_own() {
        let fleet = Fleet::instance()
            // fresh
            .key_storage(A)
            .units(3, empty(), valid(A))
            // loading interrupted
            .and_instance()
            .key_storage(A)
            .unit(uncommitted(B), valid(A))
            .unit(committed(B), valid(A))
            .unit(empty(), valid(A))
            // interrupted after the rewrap, u1 promoted
            .and_instance()
            .key_storage(B)
            .unit(empty(), valid(B))
            .units(2, committed(B), valid(A))
            // done
            .and_instance()
            .key_storage(B)
            .units(3, empty(), valid(B));
        let ids = fleet.ids();
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps_of(
            &plan,
            Some(&ids[0]),
            [
                each_of(0, "load_new_mk", 1..=3),
                each_of(0, "commit_new_mk", 1..=3),
                vec![wide("rewrap_key_storage")],
                each_of(0, "set_immediate", 1..=3),
            ]
            .concat(),
        );
        assert_steps_of(
            &plan,
            Some(&ids[1]),
            [
                each_of(1, "load_new_mk", [3]),
                each_of(1, "commit_new_mk", [1, 3]),
                vec![wide("rewrap_key_storage")],
                each_of(1, "set_immediate", 1..=3),
            ]
            .concat(),
        );
        assert_steps_of(
            &plan,
            Some(&ids[2]),
            [
                each_of(2, "remove_unit", [1]),
                each_of(2, "set_immediate", 2..=3),
            ]
            .concat(),
        );
        assert_steps_of(&plan, Some(&ids[3]), vec![]);
        // Nothing else: every step belongs to one of the four instances.
        assert_eq!(pairs(&plan, None).len(), 10 + 7 + 3);
        let mut step_ids: Vec<String> = steps(&plan).iter().map(id).collect();
        let count = step_ids.len();
        step_ids.sort();
        step_ids.dedup();
        assert_eq!(step_ids.len(), count, "step ids are not unique");
        // Every unit step names a unit of its own instance.
        for step in steps(&plan) {
            if let Some(unit) = step.get("unit").and_then(|u| u.as_str()) {
                let index = ids
                    .iter()
                    .position(|i| step["instance"] == i.as_str())
                    .expect("known instance");
                assert!(
                    (1..=3).any(|n| hsm(index, n) == unit),
                    "step {step} names a unit of another instance"
                );
            }
        }
        // The plan describes all four instances.
        let described: Vec<&str> = plan["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            described,
            ids.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
}

crate::on_both_backends! {
    /// 3 operational + 2 recovery + 2 failover units: a rotation selects every one of them.
    fn every_unit_type_is_rotated() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .units(3, empty(), valid(A))
            .unit(empty(), valid(A))
            .kind("recovery")
            .unit(empty(), valid(A))
            .kind("recovery")
            .unit(empty(), valid(A))
            .kind("failover")
            .unit(empty(), valid(A))
            .kind("failover");
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            [
                each("load_new_mk", 1..=7),
                each("commit_new_mk", 1..=7),
                vec![wide("rewrap_key_storage")],
                each("set_immediate", 1..=7),
            ]
            .concat(),
        );
        // The rewrap waits for the recovery and failover units too.
        let rewrap = find(&plan, "rewrap_key_storage", None)[0];
        let commits = set(find(&plan, "commit_new_mk", None).into_iter().map(id));
        assert_eq!(depends_on(rewrap), commits);
    }
}

crate::on_both_backends! {
    /// Another rotation, to C, has passed its rewrap (storage under C, every new register Full
    /// Committed C, currents A, status reported): rotating to B now would lose the storage.
    fn another_rotation_past_its_rewrap_is_refused() {
        let fleet = Fleet::instance()
            .key_storage(C)
            .reports_rotation_status(true)
            .units(3, committed(C), valid(A));
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(3);
        let refused = run.json();
        let in_flight = refusal(&refused, "no_other_rotation_in_flight");
        assert_eq!(refused_units(in_flight), set([u(1), u(2), u(3)]));
        assert!(refused_value(in_flight, &u(1)).contains(C), "{in_flight:#}");
        assert!(
            in_flight["fix"].as_str().unwrap().contains(C),
            "the fix should name C: {in_flight:#}"
        );
        assert!(
            run.stderr.contains("no_other_rotation_in_flight")
                || run
                    .stderr
                    .contains("no other rotation past its point of no return"),
            "{}",
            run.stderr
        );
    }
}

crate::on_both_backends! {
    /// bob is not installed on u3.
    fn administrator_missing_on_one_unit_is_refused() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .units(2, empty(), valid(A))
            .unit(empty(), valid(A))
            .without_admin("bob");
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(3);
        let refused = run.json();
        let admins = refusal(&refused, "common_administrators");
        assert!(
            admins["detail"].as_str().unwrap().contains("bob"),
            "{admins:#}"
        );
        let u3 = refused_value(admins, &u(3));
        assert!(u3.contains("alice") && !u3.contains("bob"), "{u3}");
        assert!(
            run.stderr.contains("common_administrators")
                || run.stderr.contains("a common set of administrators")
        );
        assert!(run.stderr.contains(&u(3)), "{}", run.stderr);
    }
}

crate::on_both_backends! {
    /// The desired file asks for thresholds 3/3; the units have 2/2.
    fn desired_thresholds_that_differ_from_the_units_are_refused() {
        let fleet = Fleet::instance().key_storage(A).units(3, empty(), valid(A));
        let desired = Desired::rotate_to(B)
            .thresholds(3, 3)
            .administrators(&["alice", "bob", "carol"]);
        let run = Workspace::new(&fleet, &desired).plan();
        run.expect_code(3);
        let refused = run.json();
        let thresholds = refusal(&refused, "thresholds_match_desired");
        assert_eq!(refused_units(thresholds), set([u(1), u(2), u(3)]));
        assert!(refused_value(thresholds, &u(1)).contains('2'));
        assert!(
            run.stderr.contains("thresholds_match_desired")
                || run
                    .stderr
                    .contains("thresholds installed match the desired file")
        );
    }
}

crate::on_both_backends! {
    /// A load is needed but the desired file names no key parts.
    fn load_needed_without_key_parts_is_refused() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .unit(committed(B), valid(A))
            .unit(empty(), valid(A))
            .unit(committed(B), valid(A));
        let run = Workspace::new(&fleet, &Desired::rotate_to(B).without_key_parts()).plan();
        run.expect_code(3);
        let refused = run.json();
        let parts = refusal(&refused, "key_parts_available");
        assert_eq!(refused_units(parts), set([u(2)]));
        assert!(
            run.stderr.contains("key_parts_available") || run.stderr.contains("key parts available")
        );
        assert!(run.stderr.contains(&u(2)), "{}", run.stderr);
    }
}

crate::on_both_backends! {
    /// Without key parts, a plan that needs no load is fine (the desired file may omit them).
    fn key_parts_may_be_omitted_when_nothing_is_loaded() {
        let fleet = Fleet::instance()
            .key_storage(B)
            .units(3, committed(B), valid(A));
        let run = Workspace::new(&fleet, &Desired::rotate_to(B).without_key_parts()).plan();
        run.expect_code(2);
        assert_steps(&run.json(), each("set_immediate", 1..=3));
    }
}

crate::on_both_backends! {
    /// VPs compare on their first 56 hex characters, case-insensitively: units that show B in
    /// upper case with other last 4 bytes already hold B.
    fn verification_patterns_compare_on_56_hex_characters_case_insensitively() {
        const B_AS_SHOWN: &str = "57C060B114F5A20A4347CD12E326EBD6B98C5BF07B48E7F0FBEB4C19DEADBEEF";
        assert_eq!(B_AS_SHOWN[..56].to_lowercase(), B[..56]);
        let fleet = Fleet::instance()
            .key_storage(B_AS_SHOWN)
            .reports_rotation_status(true)
            .units(3, empty(), valid(B_AS_SHOWN));
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(0);
        assert_steps(&run.json(), vec![]);

        // And the other way round: a unit already staging B-as-shown is not reloaded.
        let fleet = Fleet::instance()
            .key_storage(A)
            .units(3, committed(B_AS_SHOWN), valid(A));
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(2);
        assert_steps(
            &run.json(),
            [
                vec![wide("rewrap_key_storage")],
                each("set_immediate", 1..=3),
            ]
            .concat(),
        );
    }
}

/// `--backend sim:PATH` (relative to the working directory) wins over `backend:` in the
/// desired file.
#[test]
fn backend_flag_overrides_the_desired_file() {
    let workspace = rotate_to_b(&Fleet::instance().key_storage(A).units(3, empty(), valid(A)));
    let other = Fleet::instance()
        .key_storage(B)
        .units(3, committed(B), valid(A));
    workspace.write("other.yaml", &other.to_yaml());
    let run = workspace.mkplan(&[
        "plan",
        DESIRED,
        "--json",
        "--detailed-exitcode",
        "--backend",
        "sim:other.yaml",
    ]);
    run.expect_code(2);
    assert_steps(&run.json(), each("set_immediate", 1..=3));
}
