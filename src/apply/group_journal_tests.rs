//! The group journal's file store: records, seals and a cut last line.

use super::*;

#[test]
fn records_survive_a_reopen_and_a_cut_last_line_is_settled_later() {
    let dir = tempfile::tempdir().unwrap();
    let key = JournalKey::ephemeral();
    let mut journal = GroupJournal::open(dir.path(), "zcrypt:/x", &key).unwrap();
    journal
        .append(GroupRecord::Begin {
            identity: "zcrypt:/x".into(),
            at: "t".into(),
            targets: BTreeMap::new(),
            serials: BTreeMap::from([("03".into(), "S3".into())]),
            apqns: Vec::new(),
        })
        .unwrap();
    journal
        .append(GroupRecord::Intent {
            identity: "zcrypt:/x".into(),
            at: "t".into(),
            step: "z1".into(),
            action: "stage_reencipher".into(),
            what: "zkey …".into(),
            send_within_ms: None,
        })
        .unwrap();
    let path = GroupJournal::path_for(dir.path(), "zcrypt:/x");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"record\":\"outc")
        .unwrap();
    let mut again = GroupJournal::open(dir.path(), "zcrypt:/x", &key).unwrap();
    assert_eq!(again.open_change_serials().unwrap()[&3], "S3");
    assert_eq!(again.unsettled().len(), 1);
    // The cut line is gone: the next record chains on and verifies.
    again
        .append(GroupRecord::Done {
            identity: "zcrypt:/x".into(),
            at: "t".into(),
        })
        .unwrap();
    let read = GroupJournal::read(dir.path(), "zcrypt:/x", Some(&key)).unwrap();
    assert_eq!(read.records().len(), 3);
    // Under another key, no record is evidence.
    let error = GroupJournal::read(dir.path(), "zcrypt:/x", Some(&JournalKey::ephemeral()))
        .err()
        .unwrap();
    assert!(
        error.contains("line 1 (begin) is not authenticated"),
        "{error}"
    );
    // Another identity never reads this file's records as its own.
    assert_ne!(GroupJournal::path_for(dir.path(), "zcrypt:/y"), path);
}

/// A sink that keeps what it is given, as a database would.
struct Kept(std::sync::Arc<std::sync::Mutex<Vec<GroupRecord>>>);

impl GroupSink for Kept {
    fn append(&mut self, record: &GroupRecord, count: usize) -> Result<(), String> {
        let mut kept = self.0.lock().unwrap();
        kept.push(record.clone());
        assert_eq!(kept.len(), count, "the journal counts what it appended");
        Ok(())
    }

    fn send_window(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(10))
    }
}

fn done(identity: &str) -> GroupRecord {
    GroupRecord::Done {
        identity: identity.into(),
        at: "t".into(),
    }
}

#[test]
fn a_shared_journal_appends_through_its_sink_and_refuses_foreign_or_pushed_records() {
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut journal = GroupJournal::shared(
        "of zcrypt:/x in db".into(),
        "zcrypt:/x",
        Vec::new(),
        Some(Box::new(Kept(kept.clone()))),
    )
    .unwrap();
    assert_eq!(
        journal.send_window(),
        Some(std::time::Duration::from_secs(10))
    );
    journal.append(done("zcrypt:/x")).unwrap();
    assert_eq!(kept.lock().unwrap().len(), 1);
    assert_eq!(journal.records().len(), 1);
    let foreign =
        GroupJournal::shared("j".into(), "zcrypt:/x", vec![done("zcrypt:/y")], None).err();
    assert!(foreign.unwrap().contains("another backend or group"));
    let pushed = GroupRecord::Pushed {
        identity: "zcrypt:/x".into(),
        at: "t".into(),
        to: "postgres://db".into(),
    };
    let archived = GroupJournal::shared("j".into(), "zcrypt:/x", vec![pushed], None).err();
    assert!(archived.unwrap().contains("was pushed to postgres://db"));
    // Read only: nothing to append through.
    let mut read = GroupJournal::shared("j".into(), "zcrypt:/x", Vec::new(), None).unwrap();
    assert!(read.append(done("zcrypt:/x")).is_err());
}
