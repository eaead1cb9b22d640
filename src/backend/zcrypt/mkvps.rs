//! The kernel's `mkvps` attribute of one APQN: the state and verification pattern of each
//! master key register. EP11 prints its wrapping key (`WK CUR`, `WK NEW`); CCA prints `NEW`,
//! `CUR` and `OLD` for each of `AES`, `APKA` and `ASYM` that the kernel knows. Which types a
//! kernel prints depends on its version and on backports, so the text is read by content,
//! never by kernel version.
//!
//! Nothing is guessed: a line that is not one of the forms the kernel prints, a register
//! given twice, EP11 and CCA lines together, or a register left out of a type that is there
//! makes the whole attribute unreadable, and the error names the line.
//!
//! Two kinds of failure are told apart. Text that is not in a form any kernel prints (a
//! word, a length, a register missing) is *unreadable*: a reading problem, an error. Text
//! that makes two claims that cannot both hold (one register shown twice with different
//! values; EP11 and CCA registers on one APQN; a register that is empty yet shows a key, or
//! holds a key yet shows none) *contradicts itself*: the evidence disagrees, which the
//! caller refuses for safety (exit 3), never resolves by picking one.

use std::fmt;

/// A master key type as the kernel names it in `mkvps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MkType {
    /// EP11's wrapping key.
    Wk,
    Aes,
    Apka,
    Asym,
}

impl MkType {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "WK" => Self::Wk,
            "AES" => Self::Aes,
            "APKA" => Self::Apka,
            "ASYM" => Self::Asym,
            _ => return None,
        })
    }

    /// Hex digits of its verification pattern as the kernel prints it: EP11 32 bytes, CCA
    /// AES and APKA 8, ASYM 16.
    pub fn pattern_hex_len(self) -> usize {
        match self {
            Self::Wk => 64,
            Self::Aes | Self::Apka => 16,
            Self::Asym => 32,
        }
    }

    pub fn is_ep11(self) -> bool {
        self == Self::Wk
    }
}

impl fmt::Display for MkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wk => "WK",
            Self::Aes => "AES",
            Self::Apka => "APKA",
            Self::Asym => "ASYM",
        })
    }
}

/// A register of one master key type. EP11 has no OLD register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Register {
    New,
    Current,
    Old,
}

impl Register {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "NEW:" => Self::New,
            "CUR:" => Self::Current,
            "OLD:" => Self::Old,
            _ => return None,
        })
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New => "NEW",
            Self::Current => "CUR",
            Self::Old => "OLD",
        })
    }
}

/// A register's state in the kernel's words. EP11's are HPCS's (`empty` = Empty, `uncommitted`
/// = Full Uncommitted, `committed` = Full Committed, `valid` = Valid); CCA loads NEW in parts
/// (`partial`) to `full`, with no commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Empty,
    Uncommitted,
    Committed,
    Partial,
    Full,
    Valid,
    Invalid,
    /// `- -`: the card did not answer the query, or the queue is offline.
    Unknown,
}

impl State {
    /// The state, if `word` is one that this register of this type can show.
    fn parse(word: &str, mk_type: MkType, register: Register) -> Option<Self> {
        let state = match word {
            "-" => Self::Unknown,
            "empty" => Self::Empty,
            "uncommitted" => Self::Uncommitted,
            "committed" => Self::Committed,
            "partial" => Self::Partial,
            "full" => Self::Full,
            "valid" => Self::Valid,
            "invalid" => Self::Invalid,
            _ => return None,
        };
        let allowed: &[Self] = match (mk_type.is_ep11(), register) {
            (_, Register::Current | Register::Old) => &[Self::Valid, Self::Invalid],
            (true, Register::New) => &[Self::Empty, Self::Uncommitted, Self::Committed],
            (false, Register::New) => &[Self::Empty, Self::Partial, Self::Full],
        };
        (state == Self::Unknown || allowed.contains(&state)).then_some(state)
    }

    /// Whether the register holds a whole key, whose verification pattern the kernel prints.
    pub fn holds_a_key(self) -> bool {
        matches!(
            self,
            Self::Uncommitted | Self::Committed | Self::Full | Self::Valid
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty",
            Self::Uncommitted => "uncommitted",
            Self::Committed => "committed",
            Self::Partial => "partial",
            Self::Full => "full",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unknown => "unknown (the card did not answer)",
        })
    }
}

/// One register as `mkvps` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterState {
    pub mk_type: MkType,
    pub register: Register,
    pub state: State,
    /// Lower-case hex, only when the register holds a key (the kernel prints zeros otherwise).
    pub pattern: Option<String>,
}

/// The registers of one APQN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mkvps {
    registers: Vec<RegisterState>,
}

/// Why `mkvps` could not be read: the line (1-based) and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct MkvpsError {
    pub line: usize,
    pub why: String,
    /// The text contradicts itself (`why` names every line involved), rather than being
    /// unreadable.
    pub contradicts: bool,
}

impl MkvpsError {
    fn unreadable(line: usize, why: String) -> Self {
        Self {
            line,
            why,
            contradicts: false,
        }
    }

    fn contradiction(line: usize, why: String) -> Self {
        Self {
            line,
            why,
            contradicts: true,
        }
    }
}

impl fmt::Display for MkvpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 || self.contradicts {
            f.write_str(&self.why)
        } else {
            write!(f, "line {}: {}", self.line, self.why)
        }
    }
}

impl Mkvps {
    pub fn parse(text: &str) -> Result<Self, MkvpsError> {
        let mut registers: Vec<RegisterState> = Vec::new();
        // Where each register was read: its line number and text, for messages.
        let mut read_at: Vec<(usize, &str)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let register = parse_line(number, line)?;
            let seen =
                |(at, text): (usize, &str)| format!("line {at} {}", crate::quote::quote(text));
            if let Some(i) = registers
                .iter()
                .position(|r| (r.mk_type, r.register) == (register.mk_type, register.register))
            {
                let (mk_type, shown) = (register.mk_type, register.register);
                if registers[i] == register {
                    return Err(MkvpsError::unreadable(
                        number,
                        format!(
                            "{mk_type} {shown} is shown twice (also at line {})",
                            read_at[i].0
                        ),
                    ));
                }
                return Err(MkvpsError::contradiction(
                    number,
                    format!(
                        "{mk_type} {shown} is shown twice with different values: {} and {}",
                        seen(read_at[i]),
                        seen((number, line))
                    ),
                ));
            }
            if let Some(first) = registers.first()
                && first.mk_type.is_ep11() != register.mk_type.is_ep11()
            {
                let (ep11, cca) = if first.mk_type.is_ep11() {
                    (read_at[0], (number, line))
                } else {
                    ((number, line), read_at[0])
                };
                return Err(MkvpsError::contradiction(
                    number,
                    format!(
                        "EP11 and CCA registers on one APQN, which runs one mode: {} is EP11's, {} CCA's",
                        seen(ep11),
                        seen(cca)
                    ),
                ));
            }
            registers.push(register);
            read_at.push((number, line));
        }
        let mkvps = Self { registers };
        mkvps.check_complete()?;
        Ok(mkvps)
    }

    /// Every type shown has all its registers; a CCA APQN shows at least AES (every kernel
    /// with `mkvps` prints it).
    fn check_complete(&self) -> Result<(), MkvpsError> {
        let incomplete = |why: String| MkvpsError::unreadable(0, why);
        let Some(first) = self.registers.first() else {
            return Err(incomplete("no register is shown".into()));
        };
        let expected: &[Register] = if first.mk_type.is_ep11() {
            &[Register::Current, Register::New]
        } else {
            &[Register::New, Register::Current, Register::Old]
        };
        for mk_type in self.types() {
            for &register in expected {
                if self.get(mk_type, register).is_none() {
                    return Err(incomplete(format!(
                        "{mk_type} {register} is missing: each type shows {}",
                        expected
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        if !first.mk_type.is_ep11() && self.get(MkType::Aes, Register::New).is_none() {
            return Err(incomplete(
                "a CCA APQN shows AES registers, and these are missing".into(),
            ));
        }
        Ok(())
    }

    /// The master key types shown, in the kernel's order.
    pub fn types(&self) -> Vec<MkType> {
        let mut types: Vec<MkType> = self.registers.iter().map(|r| r.mk_type).collect();
        types.sort();
        types.dedup();
        types
    }

    pub fn is_ep11(&self) -> bool {
        self.registers.first().is_some_and(|r| r.mk_type.is_ep11())
    }

    pub fn get(&self, mk_type: MkType, register: Register) -> Option<&RegisterState> {
        self.registers
            .iter()
            .find(|r| r.mk_type == mk_type && r.register == register)
    }

    pub fn registers(&self) -> &[RegisterState] {
        &self.registers
    }
}

/// `<TYPE> <REG>: <state> <pattern>`, with the pattern `0x` + hex or `-`; `number` is its line.
fn parse_line(number: usize, line: &str) -> Result<RegisterState, MkvpsError> {
    let shown = crate::quote::quote(line);
    let unreadable = |why: String| MkvpsError::unreadable(number, why);
    // A state and a pattern that cannot both hold.
    let contradiction =
        |why: String| MkvpsError::contradiction(number, format!("line {number} {why}"));
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let [mk_type, register, state, pattern] = words[..] else {
        return Err(unreadable(format!(
            "{shown} is not `TYPE REGISTER: STATE PATTERN` (as in `WK CUR: valid 0x…`)"
        )));
    };
    let mk_type = MkType::parse(mk_type).ok_or_else(|| {
        unreadable(format!(
            "{shown}: unknown master key type (the kernel shows WK, AES, APKA and ASYM)"
        ))
    })?;
    let register = Register::parse(register)
        .filter(|r| !(mk_type.is_ep11() && *r == Register::Old))
        .ok_or_else(|| unreadable(format!("{shown}: {mk_type} has no such register")))?;
    let state = State::parse(state, mk_type, register).ok_or_else(|| {
        unreadable(format!(
            "{shown}: {mk_type} {register} cannot be in that state"
        ))
    })?;
    let pattern = match pattern {
        "-" => None,
        hex => {
            let digits = hex
                .strip_prefix("0x")
                .filter(|d| {
                    d.len() == mk_type.pattern_hex_len() && d.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .ok_or_else(|| {
                    unreadable(format!(
                        "{shown}: a {mk_type} verification pattern is 0x and {} hex digits, or -",
                        mk_type.pattern_hex_len()
                    ))
                })?;
            Some(digits.to_ascii_lowercase())
        }
    };
    let pattern = match (state.holds_a_key(), pattern) {
        (true, None) => {
            return Err(contradiction(format!(
                "{shown}: a register that is {state} shows no verification pattern"
            )));
        }
        (true, pattern) => pattern,
        // The kernel prints zeros for a register without a key; a pattern shown anyway would
        // be a key mkplan cannot place, so it is not taken.
        (false, Some(p)) if p.bytes().any(|b| b != b'0') => {
            return Err(contradiction(format!(
                "{shown}: a register that is {state} shows a verification pattern"
            )));
        }
        (false, _) => None,
    };
    if state == State::Unknown && pattern.is_some() {
        return Err(contradiction(format!(
            "{shown}: an unknown state with a pattern"
        )));
    }
    Ok(RegisterState {
        mk_type,
        register,
        state,
        pattern,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A64: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn an_ep11_apqn_mid_rotation_reads_as_hpcs_would_show_it() {
        let text = format!(
            "WK CUR: valid 0x{A64}\nWK NEW: committed 0x{}\n",
            "0b".repeat(32)
        );
        let mkvps = Mkvps::parse(&text).unwrap();
        assert!(mkvps.is_ep11());
        let current = mkvps.get(MkType::Wk, Register::Current).unwrap();
        assert_eq!(
            (current.state, current.pattern.as_deref()),
            (State::Valid, Some(A64))
        );
        let new = mkvps.get(MkType::Wk, Register::New).unwrap();
        assert_eq!(new.state, State::Committed);
        assert_eq!(mkvps.get(MkType::Wk, Register::Old), None);
    }

    #[test]
    fn a_cca_apqn_shows_each_type_it_has_with_zeros_for_registers_without_a_key() {
        let text = "AES NEW: partial 0x0000000000000000\nAES CUR: valid 0x1122334455667788\nAES OLD: invalid 0x0000000000000000\nAPKA NEW: empty 0x0000000000000000\nAPKA CUR: valid 0xAABBCCDDEEFF0011\nAPKA OLD: valid 0x0102030405060708\n";
        let mkvps = Mkvps::parse(text).unwrap();
        assert!(!mkvps.is_ep11());
        assert_eq!(mkvps.types(), [MkType::Aes, MkType::Apka]);
        let new = mkvps.get(MkType::Aes, Register::New).unwrap();
        assert_eq!((new.state, new.pattern.clone()), (State::Partial, None));
        let current = mkvps.get(MkType::Apka, Register::Current).unwrap();
        assert_eq!(current.pattern.as_deref(), Some("aabbccddeeff0011"));
    }

    #[test]
    fn dashes_are_an_unknown_state_not_an_empty_register() {
        let mkvps = Mkvps::parse("WK CUR: - -\nWK NEW: - -\n").unwrap();
        assert_eq!(
            mkvps.get(MkType::Wk, Register::New).unwrap().state,
            State::Unknown
        );
        // A newer kernel's `ASYM NEW: empty -` is "no pattern".
        let text = "AES NEW: empty 0x0000000000000000\nAES CUR: valid 0x1122334455667788\nAES OLD: invalid 0x0000000000000000\nASYM NEW: empty -\nASYM CUR: - -\nASYM OLD: invalid -\n";
        let mkvps = Mkvps::parse(text).unwrap();
        assert_eq!(
            mkvps.get(MkType::Asym, Register::Current).unwrap().state,
            State::Unknown
        );
    }

    #[test]
    fn anything_the_kernel_does_not_print_is_refused_with_its_line() {
        let good_current = format!("WK CUR: valid 0x{A64}");
        for (text, line, expected) in [
            (
                format!("{good_current}\nWK NEW: full 0x{A64}"),
                2,
                "WK NEW cannot be in that state",
            ),
            (
                format!("{good_current}\nWK OLD: valid 0x{A64}"),
                2,
                "WK has no such register",
            ),
            (
                format!("{good_current}\nWK NEW: empty 0x{A64}"),
                2,
                "shows a verification pattern",
            ),
            (
                format!("{good_current}\nWK NEW: committed -"),
                2,
                "shows no verification pattern",
            ),
            (
                "WK CUR: valid 0xabc\nWK NEW: empty -".into(),
                1,
                "0x and 64 hex digits",
            ),
            (
                format!("{good_current}\n{good_current}"),
                2,
                "WK CUR is shown twice",
            ),
            (
                format!("{good_current}\nAES NEW: empty -"),
                2,
                "EP11 and CCA registers",
            ),
            (
                "SYM CUR: valid 0x1122334455667788".into(),
                1,
                "unknown master key type",
            ),
            (
                format!("{good_current} extra"),
                1,
                "is not `TYPE REGISTER: STATE PATTERN`",
            ),
            (good_current.clone(), 0, "WK NEW is missing"),
            (
                "APKA NEW: empty -\nAPKA CUR: valid 0x1122334455667788\nAPKA OLD: invalid -".into(),
                0,
                "AES registers",
            ),
            (String::new(), 0, "no register is shown"),
        ] {
            let error = Mkvps::parse(&text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(expected), "{text:?}: {error}");
        }
    }

    /// Two claims that cannot both hold contradict; text no kernel prints is unreadable.
    #[test]
    fn a_register_shown_twice_with_two_values_contradicts_and_names_both_lines() {
        let current = format!("WK CUR: valid 0x{A64}");
        let other = format!("WK CUR: valid 0x{}", "b2".repeat(32));
        for (text, contradicts, expected) in [
            (
                format!("{current}\nWK NEW: empty -\n{other}"),
                true,
                format!(
                    "WK CUR is shown twice with different values: line 1 \"{current}\" and line 3 \"{other}\""
                ),
            ),
            (
                format!("{current}\nWK NEW: empty -\nAES NEW: empty -"),
                true,
                format!("line 1 \"{current}\" is EP11's, line 3 \"AES NEW: empty -\" CCA's"),
            ),
            (
                format!("{current}\nWK NEW: empty 0x{A64}"),
                true,
                "line 2 \"WK NEW: empty 0x".into(),
            ),
            (
                format!("{current}\nWK NEW: empty -\n{current}"),
                false,
                "WK CUR is shown twice (also at line 1)".into(),
            ),
            (
                "WK CUR: valid 0xabc\nWK NEW: empty -".into(),
                false,
                "0x and 64 hex digits".into(),
            ),
        ] {
            let error = Mkvps::parse(&text).unwrap_err();
            assert_eq!(error.contradicts, contradicts, "{text:?}: {error}");
            assert!(error.to_string().contains(&expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_hostile_line_is_quoted_inert() {
        let error = Mkvps::parse("WK CUR: valid \u{1b}[2J\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\\u{1b}"), "{error}");
        assert!(!error.contains('\u{1b}'), "{error}");
    }
}
