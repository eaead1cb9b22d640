//! The state folder, made so that it cannot be turned against its user: a folder created
//! 0700, refused when it is a symlink, belongs to someone else, or others may write it; its
//! files (`lock`, `journal.jsonl`, `audit.jsonl`) created 0600 with `O_EXCL` and opened with
//! `O_NOFOLLOW`, so a symlink planted there (a repository that ships a `.mkplan/`) is never
//! written through.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates the state folder (0700) if it is missing, and checks it.
pub fn prepare(state_dir: &Path) -> Result<(), String> {
    match fs::symlink_metadata(state_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|e| {
                    format!(
                        "cannot create the state folder {}: {e}",
                        state_dir.display()
                    )
                })?;
        }
        Err(e) => {
            return Err(format!(
                "cannot read the state folder {}: {e}",
                state_dir.display()
            ));
        }
        Ok(_) => {}
    }
    check(state_dir)
}

/// Refuses a state folder that is a symlink, is not a folder, belongs to another user, or
/// that its group or others may write: each would let someone else forge the journal.
pub fn check(state_dir: &Path) -> Result<(), String> {
    let shown = state_dir.display();
    let meta = fs::symlink_metadata(state_dir)
        .map_err(|e| format!("cannot read the state folder {shown}: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "the state folder {shown} is a symlink: mkplan keeps its journal only in a real folder. Point --state-dir at the folder itself, or remove the link"
        ));
    }
    if !meta.is_dir() {
        return Err(format!("the state folder {shown} is not a folder"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "the state folder {shown} belongs to user {}, not to you ({me}): another user could forge its journal. Use a state folder of your own",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "the state folder {shown} may be written by its group or others (mode {mode:o}): they could forge its journal. Fix it with `chmod go-w {shown}` (mkplan creates it 0700)"
        ));
    }
    Ok(())
}

/// Opens a file of the state folder for `options`, never through a symlink; a missing file
/// is created 0600 with `O_EXCL`.
pub fn open(path: &Path, options: &OpenOptions) -> io::Result<File> {
    let mut existing = options.clone();
    existing.create(false).custom_flags(libc::O_NOFOLLOW);
    match existing.open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut fresh = options.clone();
            fresh
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW);
            fresh.open(path)
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(io::Error::other(format!(
            "{} is a symlink: mkplan never writes through one in its state folder; remove it",
            path.display()
        ))),
        other => other,
    }
}

/// Reads a whole file of the state folder, never through a symlink; a missing file is empty.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW);
    match options.open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut file, &mut bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(io::Error::other(format!(
            "{} is a symlink: mkplan never reads its state through one; remove it",
            path.display()
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        prepare(&state).unwrap();
        assert_eq!(
            fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, state.join("journal.jsonl")).unwrap();
        let mut append = OpenOptions::new();
        append.append(true);
        let error = open(&state.join("journal.jsonl"), &append).unwrap_err();
        assert!(error.to_string().contains("symlink"), "{error}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        let created = open(&state.join("audit.jsonl"), &append).unwrap();
        assert_eq!(
            created.metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_folder_others_may_write_or_a_symlinked_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        prepare(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check(&state).unwrap_err().contains("chmod go-w"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        assert!(check(&link).unwrap_err().contains("symlink"));
    }
}
