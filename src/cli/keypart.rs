//! `keypart new` and `keypart vp`, and the opening of key part files for `apply` and `drill`.
//! Passwords come from the environment variable named by `--password-env` or by the desired
//! file's `password_env`, else from a prompt on the terminal that does not echo; never from a
//! flag's value.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::Path;

use super::password_env::Passwords;
use crate::error::{Error, Result};
use crate::keypart::{self, NONCE_LEN, Password, SALT_LEN, SealRandom, Secret32};

pub fn new(out: &Path, password_env: Option<&str>) -> Result<u8> {
    let password = new_file_password(&format!("the new key part {}", out.display()), password_env)?;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    let mut random = SealRandom {
        salt: [0; SALT_LEN],
        nonce: [0; NONCE_LEN],
    };
    for buffer in [&mut bytes[..], &mut random.salt[..], &mut random.nonce[..]] {
        getrandom::fill(buffer)
            .map_err(|e| Error::Other(format!("no randomness from the operating system: {e}")))?;
    }
    let part = Secret32::from_bytes(*bytes);
    let file = keypart::seal(&part, &password, &random).map_err(|e| Error::Other(e.to_string()))?;
    let text = serde_json::to_string_pretty(&file).expect("key part file serializes") + "\n";
    write_new(out, text.as_bytes())?;
    println!("{}", file.verification_pattern);
    eprintln!(
        "Wrote key part {} (verification pattern {}). Keep its password with its custodian.",
        out.display(),
        file.verification_pattern
    );
    Ok(0)
}

/// `sim sigkey new`: a P-521 signature key file in the TKE CLI's format, and the fleet line
/// of its administrator (the SKI and public key, which are not secret).
pub fn new_signature_key(
    out: &Path,
    administrator: &str,
    password_env: Option<&str>,
) -> Result<u8> {
    use crate::backend::tke::{kari, sigkey};
    let password = new_file_password(
        &format!("the new signature key file {}", out.display()),
        password_env,
    )?;
    let secret = kari::random_secret();
    write_new(
        out,
        sigkey::file_text(&secret, password.as_bytes()).as_bytes(),
    )?;
    let point = kari::point(&secret.public_key());
    println!(
        "- {{ name: {administrator}, ski: \"{}\", public_key: \"{}\" }}",
        hex::encode(sigkey::p521_ski(&point)),
        hex::encode(&point)
    );
    eprintln!(
        "Wrote signature key file {} (P-521) for administrator {administrator}. The line above goes under a crypto unit's administrators in a simulator fleet.",
        out.display()
    );
    Ok(0)
}

/// The password for a new file (`what`, e.g. "the new key part F"): from `password_env` or
/// asked twice on the terminal, and long enough. Ctrl-C outside the prompt ends mkplan.
fn new_file_password(what: &str, password_env: Option<&str>) -> Result<Password> {
    end_on_interrupt_outside_prompts();
    let password = password(
        &mut Passwords::default(),
        &Asked {
            what: what.to_string(),
            prompt: format!("Password for {what}: "),
            variable: password_env,
            named_by: NamedBy::Flag,
        },
        true,
    )?;
    if !password.is_long_enough() {
        return Err(Error::Other(format!(
            "the password is too short: use at least {} characters",
            keypart::PASSWORD_LEN_MIN
        )));
    }
    Ok(password)
}

/// Creates the file only if it does not exist (a key part is never overwritten), readable by
/// its owner only.
fn write_new(out: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let failed = |e: std::io::Error| {
        Error::Other(format!(
            "cannot create {}: {e} (a key part file is never overwritten; choose a new name)",
            out.display()
        ))
    };
    let mut file = options.open(out).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    Ok(())
}

pub fn vp(files: &[std::path::PathBuf], password_envs: &[String]) -> Result<u8> {
    end_on_interrupt_outside_prompts();
    if password_envs.len() > 1 && password_envs.len() != files.len() {
        return Err(Error::Other(format!(
            "{} --password-env given for {} files: give one for all files, or one per file in order",
            password_envs.len(),
            files.len()
        )));
    }
    let sources: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(index, path)| {
            let env = password_envs
                .get(index)
                .or(password_envs.first())
                .map(String::as_str);
            (path.as_path(), env)
        })
        .collect();
    let parts = open_key_parts(&sources, NamedBy::Flag)?;
    let key = keypart::combine(&parts).map_err(|e| Error::Other(e.to_string()))?;
    println!("{}", key.verification_pattern());
    Ok(0)
}

/// Who names the variables that hold key part passwords, for the fix when one is not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NamedBy {
    /// `password_env:` under the key part in the desired file.
    DesiredFile,
    /// `--password-env`.
    Flag,
}

/// One password to obtain: for what, the prompt on a terminal, and the variable that may
/// hold it.
pub(super) struct Asked<'a> {
    pub(super) what: String,
    pub(super) prompt: String,
    pub(super) variable: Option<&'a str>,
    pub(super) named_by: NamedBy,
}

/// Reads and decrypts several key part files: passwords first, one at a time (a variable read
/// once however many files name it, then gone from the environment; else a prompt on the
/// terminal, asked once per variable), then the memory-hard decryptions in parallel, one
/// thread per core. Called with no request in flight (see `Passwords::get`).
pub(super) fn open_key_parts(
    sources: &[(&std::path::Path, Option<&str>)],
    named_by: NamedBy,
) -> Result<Vec<keypart::Secret32>> {
    let mut passwords = Passwords::default();
    let mut sealed = Vec::with_capacity(sources.len());
    for (path, env) in sources {
        let shown = path.display().to_string();
        let text = keypart::read_text(path).map_err(|e| {
            Error::Other(format!(
                "cannot read key part file {}: {e}",
                crate::quote::name(&shown)
            ))
        })?;
        let file = keypart::parse_file(&shown, &text)?;
        let unset = env.map_or(String::new(), |name| format!("; {name} is not set"));
        let asked = Asked {
            what: format!("key part file {shown}"),
            prompt: format!(
                "Password for key part {shown} (custodian of key part VP {}…{unset}): ",
                file.verification_pattern.short()
            ),
            variable: *env,
            named_by,
        };
        let password = password(&mut passwords, &asked, false)?;
        sealed.push((shown, file, password));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut opened = Vec::with_capacity(sealed.len());
    for chunk in sealed.chunks(threads) {
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(shown, file, password)| {
                    scope.spawn(move || {
                        keypart::open(file, password).map_err(|e| {
                            Error::Other(format!(
                                "key part file {}: {e}",
                                crate::quote::name(shown)
                            ))
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a decryption thread does not panic"))
                .collect()
        });
        for result in results {
            opened.push(result?);
        }
    }
    Ok(opened)
}

/// The password from its variable if it is set, else typed on the terminal without echo
/// (twice with `confirm`), else an error that names the variable and the fix.
pub(super) fn password(
    passwords: &mut Passwords,
    asked: &Asked,
    confirm: bool,
) -> Result<Password> {
    if let Some(name) = asked.variable
        && let Some(password) = passwords.take(name)
    {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal(asked));
    }
    let first = Password::new(prompt(&asked.prompt)?);
    if confirm {
        let again = zeroize::Zeroizing::new(prompt("Again: ")?);
        if !first.matches(&again) {
            return Err(Error::Other(
                "the two passwords differ; nothing was written".into(),
            ));
        }
    }
    if let Some(name) = asked.variable {
        passwords.remember(name, first.clone());
    }
    Ok(first)
}

/// Interrupts as the prompts see them. While a prompt reads a password, the terminal's echo
/// is off and Ctrl-C reaches mkplan as a key: the prompt reads it, raises SIGINT itself, and
/// restores the terminal once the signal is handled. `owed` counts those SIGINTs that the
/// listener has not yet seen (negative: seen before the prompt returned), so the listener
/// never ends mkplan for a signal a prompt raised, however late it runs.
struct Prompting {
    now: bool,
    owed: i32,
}

static PROMPTING: std::sync::Mutex<Prompting> = std::sync::Mutex::new(Prompting {
    now: false,
    owed: 0,
});

fn prompting() -> std::sync::MutexGuard<'static, Prompting> {
    PROMPTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One password typed without echo.
fn prompt(text: &str) -> Result<String> {
    prompting().now = true;
    let typed = rpassword::prompt_password(text);
    let mut state = prompting();
    state.now = false;
    if typed
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::Interrupted)
    {
        state.owed += 1;
    }
    drop(state);
    typed.map_err(unread)
}

/// For `keypart new` and `keypart vp`, which have nothing to finish when interrupted: SIGINT
/// and SIGTERM end mkplan (130) at once, except while a prompt reads a password. There the
/// prompt raises SIGINT for Ctrl-C before it has restored the terminal, and the default action
/// would end mkplan with the echo still off; caught, the prompt restores the terminal and
/// returns, and mkplan says it was interrupted. (`apply` catches the signals itself.)
fn end_on_interrupt_outside_prompts() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let _inside = runtime.enter();
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
            let mut state = prompting();
            if state.now || state.owed > 0 {
                state.owed -= 1;
            } else {
                std::process::exit(128 + libc::SIGINT);
            }
        }
    });
}

/// The prompt read no password: Ctrl-C (the prompt restored the terminal first), or no input.
fn unread(error: std::io::Error) -> Error {
    Error::Other(match error.kind() {
        std::io::ErrorKind::Interrupted => {
            "interrupted at the password prompt; nothing was touched".into()
        }
        _ => format!("cannot read the password: {error}"),
    })
}

/// No variable holds the password and no terminal can ask for it: which variable, named
/// where, and the ways to give it that keep it off the command line (where the shell's
/// history and `ps` would show it).
fn no_terminal(asked: &Asked) -> Error {
    let what = &asked.what;
    Error::Other(match (asked.variable, asked.named_by) {
        (Some(name), NamedBy::DesiredFile) => format!(
            "{what}: its password variable {name} (`password_env` in the desired file) is not set, and there is no terminal to ask on. Run on a terminal to type it, or set the variable without putting the password on the command line: `read -rs {name} && export {name}`, or `set -a; . FILE; set +a` with a file readable only by you. Nothing was touched"
        ),
        (Some(name), NamedBy::Flag) => format!(
            "{what}: its password variable {name} (--password-env) is not set, and there is no terminal to ask on. Run on a terminal to type it, or set it without putting the password on the command line: `read -rs {name} && export {name}`"
        ),
        (None, NamedBy::DesiredFile) => format!(
            "{what}: the desired file names no `password_env` for it, and there is no terminal to ask for its password. Run on a terminal to type it, or add `password_env: VARIABLE` under this key part and set the variable (`read -rs VARIABLE && export VARIABLE`). Nothing was touched"
        ),
        (None, NamedBy::Flag) => format!(
            "{what}: no terminal to ask for the password: put it in an environment variable (`read -rs VARIABLE && export VARIABLE`) and name the variable with --password-env"
        ),
    })
}
