//! What `zkey list` cannot show about the zkey repository, read beside it (round 12z):
//! - zkey skips a key whose `.info` fails its integrity check, or whose `.skey` and `.info` are
//!   not both there, with only a warning on stderr, and exits 0 when a later key listed well
//!   (s390-tools zkey/keystore.c `_keystore_process_filtered`: "Key '%s' does not exist or is
//!   invalid", "… is in an inconsistent state"); it skips a `.info` that is not a regular
//!   file (a symbolic link) without a word (`_keystore_info_file_filter`). Such a key's
//!   `.skey`, and a LUKS2 header's copy of it, are still enciphered under the master key the
//!   change replaces. So every key file of the repository must be a key `zkey list` showed.
//! - zkey reads the repository `ZKEY_REPOSITORY` names, else /etc/zkey/repository (zkey(1),
//!   ENVIRONMENT): the one this mkplan's environment names must be the group's.

use std::collections::BTreeSet;
use std::path::Path;

use crate::model::domain_group_inventory::FoundZkeyKey;

/// The extensions of a key's files in the repository (keystore.c: `.skey`, `.info`, and
/// `.renc` while a re-encipherment is staged).
const KEY_FILE_EXTENSIONS: [&str; 3] = ["skey", "info", "renc"];

/// Key files of the repository that are no key `zkey list` showed; more than this many are
/// named as a count.
const SHOWN_MAX: usize = 5;

/// What zkey said on stderr while it listed: a key it warned about is not in the listing.
pub fn listing_warnings(stderr: &str) -> Result<(), String> {
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some(first) = said.first() else {
        return Ok(());
    };
    Err(format!(
        "zkey list warned {} ({} line(s) on stderr): zkey leaves out of its listing a key whose .info fails its integrity check or whose files are inconsistent, and that key's .skey and LUKS2 header copies are still under the old master key. Run `zkey list` and `zkey validate` by hand, repair or remove the key it names, and plan again",
        crate::quote::quote(first.trim()),
        said.len()
    ))
}

/// Every key file of `repository` (`NAME.skey`, `NAME.info`, `NAME.renc`, whatever kind of
/// file) whose key `zkey list` did not show; the reason when there is one, naming them.
pub fn unlisted_key_files(repository: &Path, listed: &[FoundZkeyKey]) -> Result<(), String> {
    let shown = crate::quote::path(repository);
    let entries = std::fs::read_dir(repository)
        .map_err(|e| format!("cannot read the zkey repository {shown}: {e}"))?;
    let names: BTreeSet<&str> = listed.iter().map(|k| k.name.as_str()).collect();
    let mut unlisted = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read the zkey repository {shown}: {e}"))?;
        let file = entry.file_name();
        // zkey prints a name that is not UTF-8 as lossily as this reads it.
        let file = file.to_string_lossy();
        let Some((name, extension)) = file.rsplit_once('.') else {
            continue;
        };
        if KEY_FILE_EXTENSIONS.contains(&extension) && !name.is_empty() && !names.contains(name) {
            let kind = match entry.file_type() {
                Ok(kind) if kind.is_symlink() => " (a symbolic link, which zkey skips)",
                Ok(kind) if !kind.is_file() => " (not a regular file)",
                _ => "",
            };
            unlisted.push(format!("{}{kind}", crate::quote::quote(&file)));
        }
    }
    if unlisted.is_empty() {
        return Ok(());
    }
    unlisted.sort();
    let count = unlisted.len();
    let more = count.saturating_sub(SHOWN_MAX);
    unlisted.truncate(SHOWN_MAX);
    Err(format!(
        "the zkey repository {shown} holds key files of no key `zkey list` showed: {}{}. zkey skips a key whose .info fails its integrity check, whose .skey or .info is missing, or whose .info is not a regular file, and that key is still under the old master key. Repair the key (`zkey validate --name NAME` says what is wrong) or move its files out of the repository, and plan again",
        unlisted.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// `ZKEY_REPOSITORY` in this mkplan's environment, when it names another repository than the
/// group's `repository`: zkey run by the operator, crypttab's units and applications with
/// that environment keep their keys there, where this change would not look.
pub fn environment_disagrees(repository: &Path) -> Result<(), String> {
    let Some(value) = std::env::var_os("ZKEY_REPOSITORY") else {
        return Ok(());
    };
    let named = std::path::PathBuf::from(&value);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    };
    if !value.is_empty() && same(&named, repository) {
        return Ok(());
    }
    Err(format!(
        "ZKEY_REPOSITORY in this environment names {}, but the group's zkey repository is {} (its zkey_repository, else zkey's default): zkey reads the one ZKEY_REPOSITORY names, so keys may be kept there that this change would leave under the old master key. Write `zkey_repository: {}` in the group file if that is the machine's repository, or unset ZKEY_REPOSITORY",
        crate::quote::path(&named),
        crate::quote::path(repository),
        named.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> FoundZkeyKey {
        FoundZkeyKey {
            name: name.into(),
            mode: None,
            key_type: "EP11-AES".into(),
            apqns: Vec::new(),
            luks2_volumes: Vec::new(),
        }
    }

    #[test]
    fn a_key_file_zkey_list_did_not_show_is_named_and_its_kind_said() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["data.skey", "data.info", "backup.skey", "kms.conf", ".lock"] {
            std::fs::write(dir.path().join(file), "x").unwrap();
        }
        std::os::unix::fs::symlink(dir.path().join("x"), dir.path().join("backup.info")).unwrap();
        assert_eq!(
            unlisted_key_files(dir.path(), &[key("data"), key("backup")]),
            Ok(())
        );
        let why = unlisted_key_files(dir.path(), &[key("data")]).unwrap_err();
        assert!(why.contains("\"backup.info\" (a symbolic link"), "{why}");
        assert!(why.contains("\"backup.skey\""), "{why}");
        assert!(!why.contains("data."), "{why}");
    }

    #[test]
    fn any_warning_of_zkey_list_is_a_reason() {
        assert_eq!(listing_warnings(""), Ok(()));
        assert_eq!(listing_warnings("\n  \n"), Ok(()));
        let why =
            listing_warnings("zkey: Key 'backup' does not exist or is invalid\n").unwrap_err();
        assert!(
            why.contains("Key 'backup' does not exist or is invalid"),
            "{why}"
        );
    }
}
