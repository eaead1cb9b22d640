//! Key part passwords given in environment variables (`password_env` in a desired file,
//! `--password-env`). Each variable is read once, into a zeroizing `Password`, then wiped and
//! removed from the process's environment: no later read finds it, and neither does another
//! process of the same user that reads `/proc/PID/environ` while an apply (or a ceremony that
//! waits for people) runs.

use std::collections::HashMap;
use std::ffi::{CStr, c_char};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keypart::Password;

/// The passwords taken so far, by variable name: a variable that several key parts name is
/// read once and its password reused.
#[derive(Default)]
pub struct Passwords {
    taken: HashMap<String, Password>,
}

impl Passwords {
    /// The password in the variable `name`, taken from the environment on first use.
    ///
    /// Call it only while no other thread reads the environment outside std's own functions
    /// (which hold std's lock): mkplan's callers call it before the decryption threads start
    /// and while no request is in flight, so the async runtime's threads are idle and no name
    /// lookup (getaddrinfo, the one C caller of getenv mkplan has) is running.
    pub fn get(&mut self, name: &str) -> Result<Password> {
        if let Some(password) = self.taken.get(name) {
            return Ok(password.clone());
        }
        let not_set = || {
            Error::Other(format!(
                "the environment variable {name}, named to hold a key part password, is not set (or is not UTF-8)"
            ))
        };
        let password = take(name).ok_or_else(not_set)?;
        self.taken.insert(name.to_string(), password.clone());
        Ok(password)
    }

    /// As `get`, but `None` when the variable is not set (or is not UTF-8), and no error: the
    /// caller then asks on the terminal.
    pub fn take(&mut self, name: &str) -> Option<Password> {
        self.get(name).ok()
    }

    /// A password typed for the variable `name`, which was not set: a second key part that
    /// names it gets it without asking again.
    pub fn remember(&mut self, name: &str, password: Password) {
        self.taken.insert(name.to_string(), password);
    }
}

/// Reads the variable into a zeroizing buffer, then wipes and removes it from the environment.
fn take(name: &str) -> Option<Password> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    let value = Zeroizing::new(std::env::var_os(name)?.into_encoded_bytes());
    // SAFETY: see `Passwords::get`: no other thread reads the environment now, except through
    // std (serialised by its lock, which `remove_var` takes too).
    unsafe {
        wipe(name);
        std::env::remove_var(name);
    }
    let text = std::str::from_utf8(&value).ok()?;
    let mut owned = Zeroizing::new(String::with_capacity(text.len()));
    owned.push_str(text);
    Some(Password::from_zeroizing(owned))
}

unsafe extern "C" {
    /// The process's environment (POSIX): `NAME=VALUE` strings, ending with a null pointer.
    static mut environ: *const *mut c_char;
}

/// Overwrites the value of every `name=` entry in the environment with NUL bytes, in place.
/// `remove_var` alone only takes the pointer out of `environ`: the initial environment, which
/// `/proc/PID/environ` shows, would still hold the password for the life of the process.
///
/// # Safety
/// No other thread may read or write the environment meanwhile.
unsafe fn wipe(name: &str) {
    let prefix = [name.as_bytes(), b"="].concat();
    // SAFETY: `environ` is a null-terminated array of pointers to NUL-terminated strings that
    // this process may write (the initial block on the stack, or strings setenv allocated);
    // the caller guarantees nothing else touches it meanwhile.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = *entry;
            let length = CStr::from_ptr(text).to_bytes().len();
            let bytes = text.cast::<u8>();
            if length >= prefix.len()
                && std::slice::from_raw_parts(bytes, prefix.len()) == prefix.as_slice()
            {
                for index in prefix.len()..length {
                    bytes.add(index).write_volatile(0);
                }
            }
            entry = entry.add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "MKPLAN_TEST_PASSWORD_ENV_CHILD";
    const NAME: &str = "MKPLAN_TEST_PASSWORD";
    const SECRET: &str = "correct horse battery";

    /// Runs in a child process of its own (this test binary again, this test alone), where the
    /// variable is in the initial environment, as a custodian's password is, and where no
    /// other test runs while the environment changes.
    #[test]
    fn a_password_variable_is_read_once_then_wiped_from_the_environment() {
        let test = "cli::password_env::tests::a_password_variable_is_read_once_then_wiped_from_the_environment";
        if std::env::var_os(CHILD).is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .env(NAME, SECRET)
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{stdout}{stderr}");
            assert!(
                stdout.contains("1 passed"),
                "the child ran no test: {stdout}"
            );
            return;
        }
        let initial = || std::fs::read("/proc/self/environ").expect("/proc/self/environ");
        let holds = |bytes: &[u8]| bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(
            holds(&initial()),
            "the child does not see its initial environment"
        );
        let mut passwords = Passwords::default();
        let first = passwords.get(NAME).expect("the variable is set");
        assert!(first.matches(SECRET));
        assert!(std::env::var_os(NAME).is_none(), "still in the environment");
        assert!(
            !holds(&initial()),
            "/proc/self/environ still shows the password"
        );
        let again = passwords.get(NAME).expect("reused, not read again");
        assert!(again.matches(SECRET));
        let error = Passwords::default().get(NAME).err().expect("gone");
        assert!(error.to_string().contains("is not set"), "{error}");
        assert!(Passwords::default().get("A=B").is_err());
    }
}
