//! The "Examples:" section of each subcommand's `--help`. Every line is a command that runs
//! as shown from the root of a fresh clone (plans/ and examples/ are in it); the demo key
//! parts' passwords come from `plans/keyparts/demo.env` where a command decrypts them. The test
//! `conventions::help_examples_run_on_a_copy_of_the_clone` runs them in that order.
//!
//! Commands that change the simulated fleet (apply, attest, journal close) change
//! examples/fleets/: `git checkout examples` undoes it.

pub const VALIDATE: &str = "\
Examples:
  mkplan validate plans/three-units.yaml           # the file, its key part files, its backend
  mkplan validate plans/several-instances.yaml";

pub const PLAN: &str = "\
Examples:
  mkplan plan plans/three-units.yaml                       # show the checked plan
  mkplan plan plans/three-units.yaml --out plan.json       # save it for `show` and `apply`
  mkplan plan plans/several-instances.yaml --markdown > plan.md   # for a pull request
  mkplan plan plans/several-instances.yaml --instance 11111111-2222-4333-8444-000000000002
  mkplan plan plans/mixed-types.yaml --json > plan-mixed.json   # docs/json.md
  mkplan plan plans/three-units.yaml --detailed-exitcode   # exit 2: changes, 0: none";

pub const SHOW: &str = "\
Examples:
  mkplan show plan.json                    # the saved plan, as `plan` showed it
  mkplan show plan.json --markdown         # with a Mermaid picture of the steps
  mkplan show plan.json --dot > plan.dot   # Graphviz: dot -Tsvg plan.dot > plan.svg";

pub const RUNBOOK: &str = "\
Examples:
  mkplan runbook plan.json                  # the change window's checklist
  mkplan runbook plan.json --markdown > runbook.md";

pub const STATUS: &str = "\
Examples:
  mkplan status plans/interrupted-after-rewrap.yaml          # the live register table
  mkplan status plans/three-units.yaml --json
  mkplan status plans/three-units.yaml --export-fleet live.yaml   # a fleet for drills";

pub const DRILL: &str = "\
Examples:
  mkplan drill plans/three-units.yaml --runs 20 --seed 7    # 20 seeded fault schedules
  mkplan drill plans/several-instances.yaml --runs 10 --report drill.md";

pub const APPLY: &str = "\
Examples:
  mkplan apply plan.json        # a saved plan: runs it (key part passwords are asked first)
  mkplan apply plans/three-units.yaml   # plans, shows the plan, asks for 'yes'
  mkplan apply plans/three-units.yaml --auto-approve --parallelism 4

Passwords: leave the variables unset to be asked on the terminal; for a rehearsal with the demo
key parts, `set -a; . plans/keyparts/demo.env; set +a` first. Apply changes the fleet of a sim:
backend (examples/fleets/ here): `git checkout examples` undoes it.";

pub const ATTEST_REWRAP: &str = "\
Examples:
  mkplan attest rewrap INSTANCE --completed --desired DESIRED.yaml
      # the service said \"KMS CRK rewrap successful, waiting on cryptounit-mk-setimm\"
  mkplan attest rewrap INSTANCE --not-run --desired DESIRED.yaml
      # nobody sent the rewrap: you asked everyone who can act on the instance";

pub const ATTEST_FINALIZED: &str = "\
Examples:
  journalctl --grep 'master key change operation'
      # Slot 3: Concurrent HSM master key change operation 6d591c is finalized
  mkplan attest finalized GROUP.yaml \\
      --evidence 'syslog: slots 3 and 5, operation 6d591c is finalized'";

pub const JOURNAL_CLOSE: &str = "\
Examples:
  mkplan journal close plans/three-units.yaml   # close rotations the live state shows finished";

pub const UNLOCK: &str = "\
Examples:
  mkplan status plans/three-units.yaml    # names the lock and its holder, if one is left
  mkplan unlock LOCK_ID                   # the id exactly as the refusal or status shows it";

pub const STATE_INIT: &str = "\
Examples:
  mkplan --state postgres://mkplan@db.example:5432/mkplan state init
  MKPLAN_STATE=postgres://mkplan@db.example:5432/mkplan mkplan state init   # the same";

pub const STATE_PUSH: &str = "\
Examples:
  mkplan --state postgres://mkplan@db.example:5432/mkplan state push --from .mkplan";

pub const STATE_PULL: &str = "\
Examples:
  mkplan --state postgres://mkplan@db.example:5432/mkplan state pull --to archive-2026";

pub const AUDIT_VERIFY: &str = "\
Examples:
  mkplan audit verify                      # the audit trail in .mkplan/
  mkplan --state /srv/mkplan audit verify
  mkplan --state archive-2026/3 audit verify   # a domain group journal `state pull` wrote";

pub const KEYPART_NEW: &str = "\
Examples:
  mkplan keypart new --out custodian-3.json    # asks for the password twice, prints the VP
  read -rs PW && export PW && mkplan keypart new --out part.json --password-env PW";

pub const KEYPART_VP: &str = "\
Examples:
  cd plans/keyparts && mkplan keypart vp custodian-1.json custodian-2.json \\
      --password-env MKPLAN_PART1_PASSWORD --password-env MKPLAN_PART2_PASSWORD
  # (for the demo parts: set -a; . plans/keyparts/demo.env; set +a)";

pub const SIM_SERVE: &str = "\
Examples:
  mkplan sim serve --fleet examples/fleets/three-units.yaml --listen 127.0.0.1:8080
  mkplan plan plans/three-units.yaml --backend http://127.0.0.1:8080    # in another terminal
  mkplan sim serve --fleet examples/fleets/three-units.yaml --faults latency_ms=2000";

pub const SIM_SIGKEY_NEW: &str = "\
Examples:
  read -rs MKPLAN_SIGKEY_ALICE && export MKPLAN_SIGKEY_ALICE && \\
    mkplan sim sigkey new alice.json --administrator alice --password-env MKPLAN_SIGKEY_ALICE
  # paste the printed line under a crypto unit's administrators in the fleet, then
  # give `alice: { file: alice.json, password_env: MKPLAN_SIGKEY_ALICE }` under
  # signature_keys in the desired file";

pub const SIM_COMPACT: &str = "\
Examples:
  mkplan sim compact --fleet examples/fleets/three-units.yaml";

pub const CARDS: &str = "\
Examples:
  mkplan cards              # readers, card presence, ATR (build with --features smartcards)
  mkplan cards --watch";

pub const COMPLETIONS: &str = "\
Examples:
  mkplan completions bash > ~/.local/share/bash-completion/completions/mkplan
  mkplan completions zsh > ~/.zfunc/_mkplan          # with fpath+=(~/.zfunc) in ~/.zshrc
  mkplan completions fish > ~/.config/fish/completions/mkplan.fish
  mkplan completions powershell >> $PROFILE";

pub const MAN: &str = "\
Examples:
  mkplan man | man -l -                   # read it now
  mkplan man --out man/                   # mkplan.1, mkplan-plan.1, … for MANPATH
  sudo mkplan man --out /usr/local/share/man/man1";
