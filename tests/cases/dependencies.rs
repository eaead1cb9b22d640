//! The step graph of a full rotation (scenario row 1): the order that keeps the key storage
//! safe is in the dependencies, not only in the list order.

use crate::support::*;

crate::on_both_backends! {
    fn full_rotation_orders_load_commit_rewrap_set_immediate() {
        let fleet = Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .units(3, empty(), valid(A));
        let run = rotate_to_b(&fleet).plan();
        let plan = run.planned(2);

        let rewraps = find(&plan, "rewrap_key_storage", None);
        assert_eq!(rewraps.len(), 1);
        let rewrap = rewraps[0];
        assert_eq!(rewrap["instance"], INSTANCE);
        assert!(
            rewrap.get("unit").is_none(),
            "the rewrap is instance-wide: {rewrap}"
        );
        assert_eq!(rewrap["point_of_no_return"], true, "{rewrap}");
        assert_eq!(rewrap["reversible"], false, "{rewrap}");

        // The rewrap waits for every commit.
        let commits: Vec<_> = find(&plan, "commit_new_mk", None);
        assert_eq!(commits.len(), 3);
        let rewrap_deps = depends_on(rewrap);
        for commit in &commits {
            assert!(
                rewrap_deps.contains(&id(commit)),
                "the rewrap does not wait for {commit}"
            );
        }

        // Each commit waits for its own unit's load.
        for n in 1..=3 {
            let load = find(&plan, "load_new_mk", Some(&u(n)));
            let commit = find(&plan, "commit_new_mk", Some(&u(n)));
            assert_eq!((load.len(), commit.len()), (1, 1), "u{n}");
            assert!(
                depends_on(commit[0]).contains(&id(load[0])),
                "the commit on u{n} does not wait for its load: {}",
                commit[0]
            );
        }

        // Every set immediate waits for the rewrap.
        let set_immediates = find(&plan, "set_immediate", None);
        assert_eq!(set_immediates.len(), 3);
        for step in set_immediates {
            assert!(
                depends_on(step).contains(&id(rewrap)),
                "set immediate before the rewrap: {step}"
            );
            assert_eq!(step["reversible"], false, "{step}");
            assert_ne!(
                step.get("point_of_no_return"),
                Some(&serde_json::Value::Bool(true)),
                "{step}"
            );
        }

        // Only the rewrap is the point of no return.
        let points: Vec<_> = steps(&plan)
            .iter()
            .filter(|s| s["point_of_no_return"] == true)
            .collect();
        assert_eq!(points.len(), 1);
    }
}
