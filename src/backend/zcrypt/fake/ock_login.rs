//! The fake `pkcshsm_mk_change`'s login (OCK pkcshsm_mk_change.c `login_tokens`, common
//! `pin_prompt`): for each affected slot in slot order it prints "Enter the USER PIN for
//! slot N: " on stdout, flushed, and reads one line of stdin, cut at the first CR or LF. End
//! of file aborts ("Aborted by user."); an empty line asks again; a wrong PIN fails the
//! login ("Error logging in for slot N: 0xA0 (CKR_PIN_INCORRECT)"). Either way the tool
//! stops before its effect, as the real one removes the operation it had begun. The PIN is
//! compared by its SHA-256 and never printed.

use std::io::{BufRead, Write};

use sha2::{Digest, Sha256};

use super::world::World;

/// Lines of stdin read for one slot at most (empty lines ask again).
const PIN_TRIES_MAX: usize = 16;

pub fn pin_sha256(pin: &str) -> String {
    hex::encode(Sha256::digest(pin.as_bytes()))
}

/// Logs in to each of `slots` with a PIN read from stdin, or says why not.
pub fn login(world: &World, slots: &[u32]) -> Result<(), String> {
    let mut slots = slots.to_vec();
    slots.sort_unstable();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    for slot in slots {
        let expected = world
            .tokens
            .iter()
            .find(|t| t.slot == slot)
            .and_then(|t| t.user_pin_sha256.clone());
        let mut logged_in = false;
        for _ in 0..PIN_TRIES_MAX {
            print!("Enter the USER PIN for slot {slot}: ");
            let _ = std::io::stdout().flush();
            let mut line = zeroize::Zeroizing::new(String::new());
            let read = input.read_line(&mut line).unwrap_or(0);
            println!();
            if read == 0 {
                return Err("Aborted by user.".into());
            }
            let pin = line.split(['\r', '\n']).next().unwrap_or_default();
            if pin.is_empty() {
                eprintln!("pkcshsm_mk_change: Empty pin entered, try again.");
                continue;
            }
            if expected.as_ref().is_some_and(|sha| *sha != pin_sha256(pin)) {
                return Err(format!(
                    "Error logging in for slot {slot}: 0xA0 (CKR_PIN_INCORRECT)"
                ));
            }
            logged_in = true;
            break;
        }
        if !logged_in {
            return Err("Aborted by user.".into());
        }
    }
    Ok(())
}
