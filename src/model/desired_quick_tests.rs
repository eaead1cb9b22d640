//! The quick path of `parse_desired` (`quick_yaml` and the checks) must read every desired
//! file it accepts exactly as the full parser does, key part positions included, and leave
//! every error to the full parser, which places it at its line and column.

use super::*;

const PLANS: [&str; 5] = [
    include_str!("../../plans/three-units.yaml"),
    include_str!("../../plans/interrupted-after-rewrap.yaml"),
    include_str!("../../plans/mixed-types.yaml"),
    include_str!("../../plans/several-instances.yaml"),
    include_str!("../../plans/smart-cards.yaml"),
];

/// Words YAML reads in many ways, put in place of one value at a time.
const WORDS: &[&str] = &[
    "",
    "~",
    "null",
    "true",
    "yes",
    "No",
    "0",
    "007",
    "2",
    "9",
    "300",
    "1e3",
    "0x1F",
    "-1",
    "+1",
    "1:30",
    "a:b",
    "sim:x.yaml",
    "a: b",
    "a #b",
    "'a'",
    "\"a\"",
    "\"a\\tb\"",
    "&a",
    "*a",
    "!a",
    "|",
    "{a: b}",
    "[a]",
    "[alice]",
    "[alice, bob, ]",
    "[alice, alice]",
    "[]",
    "{}",
    "a, b",
    "%a",
    "@a",
    "?a",
    "é",
    "all",
    "alice",
    "MKPLAN_PART1_PASSWORD",
    "bad name",
    "keyparts/custodian-1.json",
    "./k.json",
    "k\u{1b}.json",
    "\"57c060b114f5a20a4347cd12e326ebd6b98c5bf07b48e7f0fbeb4c1900000000\"",
    "\"5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b\"",
    "{ holder: Ann, reader: R }",
];

fn quickly(text: &str) -> Option<Result<DesiredState, InputError>> {
    let raw = quick_yaml::read::<RawDesired>(text)?;
    Some(check(raw, "d.yaml", text, Path::new("plans")))
}

fn fully(text: &str) -> Result<DesiredState, InputError> {
    parse_fully("d.yaml", text).and_then(|raw| check(raw, "d.yaml", text, Path::new("plans")))
}

/// Whatever the quick path reads, the full parser reads the same, with the same places; and
/// `parse_desired` answers as the full path does either way.
fn assert_agree(text: &str) -> bool {
    let full = fully(text);
    assert_eq!(
        parse_desired("d.yaml", text, Path::new("plans")),
        full,
        "{text}"
    );
    match quickly(text) {
        None => false,
        Some(Ok(quick)) => {
            assert_eq!(Ok(&quick), full.as_ref(), "the quick path read:\n{text}");
            true
        }
        Some(Err(quick)) => {
            let full = full.expect_err("the full path reads what the quick path refused");
            // Only the message is compared: an error is always reported by the full path.
            assert_eq!(quick.message, full.message, "{text}");
            true
        }
    }
}

/// The plans without their comments after values (which only the full parser reads).
fn plain_plans() -> Vec<String> {
    PLANS
        .iter()
        .map(|text| {
            text.lines()
                .map(|line| match line.find(" #") {
                    Some(at) if !line.trim_start().starts_with('#') => &line[..at],
                    _ => line,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

#[test]
fn the_quick_path_reads_the_example_plans_as_the_full_parser_does() {
    for text in PLANS {
        assert_agree(text);
    }
    let plain = plain_plans();
    for text in &plain {
        assert!(
            assert_agree(text),
            "the quick path reads a plain plan:\n{text}"
        );
    }
}

/// Every variant is checked on its own, so they are shared out among threads: the longest of
/// the library's tests otherwise (issue 14).
#[test]
fn every_value_replaced_by_a_tricky_word_reads_the_same_either_way() {
    let mut variants = Vec::new();
    for text in plain_plans() {
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let Some(colon) = line.find(": ") else {
                continue;
            };
            for word in WORDS {
                let mut changed = lines.clone();
                let replaced = format!("{}: {word}", &line[..colon]);
                changed[index] = &replaced;
                variants.push(changed.join("\n") + "\n");
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let width = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let quick: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..width)
            .map(|_| {
                scope.spawn(|| {
                    let mut quick = 0;
                    while let Some(text) =
                        variants.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
                    {
                        if assert_agree(text) {
                            quick += 1;
                        }
                    }
                    quick
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .sum()
    });
    assert!(quick > 500, "the quick path read only {quick} variants");
}

#[test]
fn an_error_keeps_its_line_and_column_after_the_quick_path() {
    let text = plain_plans()[0].replace("signature_threshold: 2", "signature_threshold: 9");
    assert!(matches!(quickly(&text), Some(Err(_))));
    let error = parse_desired("d.yaml", &text, Path::new("plans")).unwrap_err();
    let line = text
        .lines()
        .position(|l| l.contains("signature_threshold: 9"))
        .unwrap();
    assert_eq!(error.position, Some((line as u64 + 1, 26)), "{error}");
    assert!(error.to_string().contains("d.yaml"), "{error}");
    // A key part file's place, which later errors name, is the full parser's.
    let state = parse_desired("d.yaml", &plain_plans()[0], Path::new("plans")).unwrap();
    let KeyPartSource::File { position, .. } = &state.instances[0].master_key.key_parts[0] else {
        panic!("a file key part")
    };
    let line = plain_plans()[0]
        .lines()
        .position(|l| l.contains("- file:"))
        .unwrap();
    assert_eq!(*position, (line as u64 + 1, 17));
}
