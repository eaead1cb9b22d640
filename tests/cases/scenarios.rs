//! The rows of shared/scenarios.md, one test each (row 5 twice: with and without a reported
//! rotation status). Three operational units u1..u3 rotating from A to B.
//! Each row's plan or refusal JSON is checked against docs/schemas by the harness
//! (`support::schemas`), on both backends.

use crate::support::*;

crate::on_both_backends! {
    /// Row 1: current A everywhere, new Empty; status reported (not rewrapped).
    fn row1_fresh_instance_loads_commits_rewraps_and_sets_immediate() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .units(3, empty(), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            [
                each("load_new_mk", 1..=3),
                each("commit_new_mk", 1..=3),
                vec![wide("rewrap_key_storage")],
                each("set_immediate", 1..=3),
            ]
            .concat(),
        );
    }
}

crate::on_both_backends! {
    /// Row 2: new Full Committed B everywhere, rewrap not done (status reported: not rewrapped).
    fn row2_all_committed_not_rewrapped_rewraps_then_sets_immediate() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .units(3, committed(B), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            [
                vec![wide("rewrap_key_storage")],
                each("set_immediate", 1..=3),
            ]
            .concat(),
        );
        assert!(
            find(&plan, "load_new_mk", None).is_empty() && find(&plan, "clear_new_mk", None).is_empty()
        );
    }
}

crate::on_both_backends! {
    /// Row 3: new Full Committed B everywhere, rewrap done (status reported: rewrapped).
    fn row3_all_committed_rewrapped_only_sets_immediate() {
        let fleet = Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(true)
            .units(3, committed(B), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(&plan, each("set_immediate", 1..=3));
    }
}

crate::on_both_backends! {
    /// Row 4: rewrap done; u1 already promoted (current B, new Empty); u2, u3 new Full Committed B.
    fn row4_after_rewrap_with_u1_promoted_removes_u1_and_sets_immediate_on_the_rest() {
        let fleet = Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(true)
            .unit(empty(), valid(B))
            .unit(committed(B), valid(A))
            .unit(committed(B), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            [vec![on("remove_unit", u(1))], each("set_immediate", 2..=3)].concat(),
        );
    }
}

crate::on_both_backends! {
    /// Row 5: current B everywhere, new Empty, status reported: nothing to do.
    fn row5_converged_with_status_reported_has_no_changes() {
        let fleet = Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(true)
            .units(3, empty(), valid(B));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(0);
        assert_eq!(plan["changes"], false);
        assert_steps(&plan, vec![]);
    }
}

crate::on_both_backends! {
    /// Row 5 with a service that does not report its rotation status: the registers alone prove
    /// the storage is under B.
    fn row5_converged_without_status_has_no_changes() {
        let fleet = Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(false)
            .units(3, empty(), valid(B));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(0);
        assert_eq!(plan["changes"], false);
        assert_steps(&plan, vec![]);
    }
}

crate::on_both_backends! {
    /// Row 6: u2 in imprint mode: refuse, naming the pre-check and the unit.
    fn row6_unit_in_imprint_mode_is_refused() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .unit(empty(), valid(A))
            .unit(empty(), valid(A))
            .imprint()
            .unit(empty(), valid(A));
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(3);
        let refused = run.json();
        let admin_mode = refusal(&refused, "admin_mode");
        assert_eq!(admin_mode["instance"], INSTANCE);
        assert_eq!(refused_units(admin_mode), set([u(2)]));
        assert!(refused_value(admin_mode, &u(2)).contains("imprint"));
        assert!(!admin_mode["fix"].as_str().unwrap().is_empty());
        assert!(
            run.stderr.contains("admin_mode") || run.stderr.contains("no crypto unit in imprint mode"),
            "stderr does not name the pre-check:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&u(2)),
            "stderr does not name u2:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("imprint"), "{}", run.stderr);
    }
}

crate::on_both_backends! {
    /// Row 7: signature thresholds 2, 2, 3: refuse, naming the pre-check and the thresholds.
    fn row7_unequal_signature_thresholds_are_refused() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .units(2, empty(), valid(A))
            .unit(empty(), valid(A))
            .signature_threshold(3);
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(3);
        let refused = run.json();
        let thresholds = refusal(&refused, "signature_thresholds_equal");
        assert_eq!(refused_units(thresholds), set([u(1), u(2), u(3)]));
        assert!(
            refused_value(thresholds, &u(3)).contains('3'),
            "{thresholds:#}"
        );
        assert!(
            refused_value(thresholds, &u(1)).contains('2'),
            "{thresholds:#}"
        );
        assert!(
            run.stderr.contains("signature_thresholds_equal")
                || run
                    .stderr
                    .contains("signature thresholds equal on all crypto units"),
            "stderr does not name the pre-check:\n{}",
            run.stderr
        );
        for n in 1..=3 {
            assert!(
                run.stderr.contains(&u(n)),
                "stderr does not name u{n}:\n{}",
                run.stderr
            );
        }
        assert!(
            run.stderr.contains("signature threshold 3"),
            "{}",
            run.stderr
        );
    }
}

crate::on_both_backends! {
    /// Row 8: new Full Committed B everywhere, status not reported, no journal: cannot tell
    /// whether the rewrap ran; refuse and say what evidence would settle it.
    fn row8_committed_everywhere_without_status_or_journal_is_refused() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(false)
            .units(3, committed(B), valid(A));
        let run = rotate_to_b(&fleet).plan();
        run.expect_code(3);
        let refused = run.json();
        let evidence = refusal(&refused, "rewrap_evidence");
        assert_eq!(refused_units(evidence), set([u(1), u(2), u(3)]));
        assert!(refused_value(evidence, &u(1)).contains(B), "{evidence:#}");
        let fix = evidence["fix"].as_str().unwrap();
        assert!(
            fix.contains("journal") && fix.contains("rotation status"),
            "{fix}"
        );
        let stderr = &run.stderr;
        assert!(
            stderr.contains("rewrap_evidence") || stderr.contains("evidence of whether the rewrap ran"),
            "stderr does not name the check:\n{stderr}"
        );
        assert!(
            stderr.contains("cannot tell whether the rewrap"),
            "{stderr}"
        );
        for n in 1..=3 {
            assert!(
                stderr.contains(&u(n)),
                "stderr does not name u{n}:\n{stderr}"
            );
        }
        // What would settle it: the journal, the service's status, or IBM support.
        assert!(stderr.contains("journal"), "{stderr}");
        assert!(stderr.contains("rotation status"), "{stderr}");
        assert!(stderr.contains("IBM support"), "{stderr}");
    }
}

crate::on_both_backends! {
    /// Row 9: u1 new Full Uncommitted B, u2 new Full Committed B, u3 new Empty.
    fn row9_partly_loaded_instance_finishes_staging_then_rotates() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .unit(uncommitted(B), valid(A))
            .unit(committed(B), valid(A))
            .unit(empty(), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);
        assert_steps(
            &plan,
            [
                vec![on("load_new_mk", u(3))],
                each("commit_new_mk", [1, 3]),
                vec![wide("rewrap_key_storage")],
                each("set_immediate", 1..=3),
            ]
            .concat(),
        );
    }
}
