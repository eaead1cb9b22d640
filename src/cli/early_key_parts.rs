//! Key part decryption started early: Argon2id is slow by design (64 MiB and about a second a
//! part here), and `apply` needs the parts only once the plan is made. The parts whose password
//! is in the environment are decrypted on threads of their own while the live state is read
//! and the plan made; the parts that need a prompt are asked for where they always were, after
//! the plan is shown and before the approval. Nothing here prints, and a part's error is kept
//! for `key_parts`, which reports it only if the plan loads that part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::context::Desired;
use super::keypart::{NamedBy, open_key_parts};
use crate::error::Result;
use crate::keypart::Secret32;
use crate::model::KeyPartSource;

/// Most parts decrypted early: each holds 64 MiB while it runs.
const EARLY_PARTS_MAX: usize = 8;

type Source = (PathBuf, Option<String>);

#[derive(Default)]
pub(super) struct EarlyKeyParts {
    running: HashMap<Source, JoinHandle<Result<Secret32>>>,
}

impl EarlyKeyParts {
    /// Starts decrypting every key part file of `desired` whose password variable is set.
    pub(super) fn start(desired: &Desired) -> Self {
        let mut sources: Vec<Source> = Vec::new();
        for instance in &desired.state.instances {
            for part in &instance.master_key.key_parts {
                let KeyPartSource::File {
                    file,
                    password_env: Some(variable),
                    ..
                } = part
                else {
                    continue;
                };
                let set = std::env::var_os(variable).is_some_and(|v| !v.is_empty());
                let source = (file.clone(), Some(variable.clone()));
                if set && !sources.contains(&source) {
                    sources.push(source);
                }
            }
        }
        if sources.len() > EARLY_PARTS_MAX {
            return Self::default();
        }
        let running = sources
            .into_iter()
            .map(|source| {
                let (file, variable) = source.clone();
                let thread = std::thread::spawn(move || {
                    let opened = open_key_parts(
                        &[(file.as_path(), variable.as_deref())],
                        NamedBy::DesiredFile,
                    )?;
                    Ok(opened.into_iter().next().expect("one part for one source"))
                });
                (source, thread)
            })
            .collect();
        Self { running }
    }

    /// The part from `file` with its password from `variable`, if it was started early:
    /// waits for its decryption.
    pub(super) fn take(&mut self, file: &Path, variable: Option<&str>) -> Option<Result<Secret32>> {
        let key = (file.to_path_buf(), variable.map(str::to_string));
        let thread = self.running.remove(&key)?;
        Some(thread.join().expect("a decryption thread does not panic"))
    }
}
