//! openCryptoki's slot configuration, `opencryptoki.conf` in its config folder: which slots
//! pkcsslotd starts, each with its token library (`stdll`) and the token's own config file
//! (`confname`). mkplan finds the EP11 and CCA tokens' configs through it, so a config named
//! otherwise than `ep11tok*.conf` / `ccatok*.conf` is found (zcrypt.md §4.3).
//!
//! The grammar is openCryptoki's configuration library's (OCK usr/lib/config/cfglex.l,
//! cfgparse.y; man opencryptoki.conf(5)): `#` comments to the end of a line, `"…"` strings
//! (no escapes, may span lines), bare words `[a-zA-Z./][a-zA-Z0-9_\-./]*`, numbers, versions
//! (`3.12`), `key = value` on one line, `slot N { … }`, `name ( a, b )` lists and bare
//! keywords. Anything else is an error at its line: pkcsslotd would not start from such a
//! file, and mkplan will not guess which tokens it holds. The slot semantics are pkcsslotd's
//! (usr/sbin/pkcsslotd/slotmgr.c `config_parse_slot`): a slot is one with a `stdll`, a slot
//! number given twice is an error, a later `confname` replaces an earlier one, and a relative
//! `confname` is a plain file name in the config folder. Pure: the backend reads the file.
//!
//! Where an EP11 token then reads its config is the token's own rule, checked in
//! openCryptoki's usr/lib/ep11_stdll/ep11_specific.c `read_adapter_config_file` (commit
//! 9915205e93a6bdd667300b3f5e5c78b085113ad8, and doc/README.ep11_stdll): with the variable
//! `OCK_EP11_TOKEN_DIR` set (`secure_getenv`), the token opens the file name part of its
//! `confname` in that folder, and when that cannot be opened, or the slot names no
//! `confname`, `ep11tok.conf` there; without it, `confname` (else `ep11tok.conf`) in the
//! config folder, with no second try. The CCA token does not read the variable.

use std::path::{Path, PathBuf};

use crate::model::domain_group::GroupMode;

/// The file's name in openCryptoki's config folder.
pub const OPENCRYPTOKI_CONF: &str = "opencryptoki.conf";
/// The variable that moves the folder the EP11 token reads its config from.
pub const EP11_TOKEN_DIR_VARIABLE: &str = "OCK_EP11_TOKEN_DIR";
/// The EP11 token's config when its slot names none (OCK `EP11_DEFAULT_CFG_FILE`).
pub const EP11_DEFAULT_CONFIG: &str = "ep11tok.conf";

/// The files an EP11 token tries for its config, in order: it reads the first it can open.
/// `token_dir` is `OCK_EP11_TOKEN_DIR`'s folder when it is set; `confname` the slot's.
pub fn ep11_config_candidates(
    config_folder: &Path,
    token_dir: Option<&Path>,
    confname: Option<&str>,
) -> Vec<PathBuf> {
    let confname = confname.filter(|name| !name.is_empty());
    match token_dir {
        Some(dir) => {
            // Only the file name part of `confname`, even of an absolute one.
            let named = confname
                .map(|name| name.rsplit('/').next().unwrap_or(name))
                .filter(|name| !name.is_empty() && *name != EP11_DEFAULT_CONFIG)
                .map(|name| dir.join(name));
            named
                .into_iter()
                .chain([dir.join(EP11_DEFAULT_CONFIG)])
                .collect()
        }
        None => vec![config_folder.join(confname.unwrap_or(EP11_DEFAULT_CONFIG))],
    }
}
/// Nesting of `{ … }` read at most (the file has one level; deeper is no opencryptoki.conf).
const DEPTH_MAX: usize = 8;

/// One EP11 or CCA slot: its number, the line it starts at, what it runs as, and its
/// `confname` with that line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSlot {
    pub slot: u64,
    pub line: usize,
    pub mode: GroupMode,
    pub confname: Option<(String, usize)>,
}

/// Why the file cannot be read, at a line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfError {
    pub line: usize,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Eol,
    Equal,
    Open,
    Close,
    ListOpen,
    ListClose,
    Comma,
    Number(u64),
    Version,
    Text(String),
    Bare(String),
}

impl Token {
    fn words(&self) -> String {
        match self {
            Self::Eol => "the end of the line".into(),
            Self::Equal => "`=`".into(),
            Self::Open => "`{`".into(),
            Self::Close => "`}`".into(),
            Self::ListOpen => "`(`".into(),
            Self::ListClose => "`)`".into(),
            Self::Comma => "`,`".into(),
            Self::Number(n) => format!("the number {n}"),
            Self::Version => "a version".into(),
            Self::Text(t) => format!("the string {}", crate::quote::quote(t)),
            Self::Bare(b) => format!("`{b}`"),
        }
    }
}

fn lex(text: &str) -> Result<Vec<(Token, usize)>, ConfError> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    let error = |line, why: String| Err(ConfError { line, why });
    while let Some((at, c)) = chars.next() {
        let token = match c {
            ' ' | '\t' => continue,
            '\n' => Token::Eol,
            '#' => {
                while chars.next_if(|(_, c)| *c != '\n').is_some() {}
                continue;
            }
            '=' => Token::Equal,
            '{' => Token::Open,
            '}' => Token::Close,
            '(' => Token::ListOpen,
            ')' => Token::ListClose,
            ',' => Token::Comma,
            '"' => {
                let start = line;
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return error(start, "a string `\"` is never closed".into()),
                        Some((_, '"')) => break,
                        Some((_, c)) => {
                            line += usize::from(c == '\n');
                            value.push(c);
                        }
                    }
                }
                tokens.push((Token::Text(value), start));
                continue;
            }
            '0'..='9' => {
                let mut end = at + 1;
                while let Some((i, c)) =
                    chars.next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '.')
                {
                    end = i + c.len_utf8();
                }
                let word = &text[at..end];
                let digits = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
                if let Some((major, minor)) = word.split_once('.')
                    && digits(major)
                    && digits(minor)
                {
                    Token::Version
                } else if let Some(hex) = word.strip_prefix("0x")
                    && let Ok(n) = u64::from_str_radix(hex, 16)
                {
                    Token::Number(n)
                } else if digits(word)
                    && (word == "0" || !word.starts_with('0'))
                    && let Ok(n) = word.parse()
                {
                    Token::Number(n)
                } else {
                    return error(
                        line,
                        format!(
                            "{} is not a number or version openCryptoki reads",
                            crate::quote::quote(word)
                        ),
                    );
                }
            }
            c if c.is_ascii_alphabetic() || c == '.' || c == '/' => {
                let mut end = at + 1;
                while let Some((i, c)) = chars.next_if(|(_, c)| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
                }) {
                    end = i + c.len_utf8();
                }
                Token::Bare(text[at..end].to_string())
            }
            other => {
                return error(
                    line,
                    format!(
                        "the character {} has no meaning there",
                        crate::quote::quote(&other.to_string())
                    ),
                );
            }
        };
        let eol = token == Token::Eol;
        tokens.push((token, line));
        line += usize::from(eol);
    }
    Ok(tokens)
}

/// A `key = value` or a `slot N { … }` of the file, as far as mkplan needs them.
enum Element {
    Assign {
        key: String,
        value: Token,
        line: usize,
    },
    Slot {
        number: u64,
        line: usize,
        body: Vec<Element>,
    },
    Other,
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(1, |(_, l)| *l)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        token
    }

    fn skip_lines(&mut self) {
        while self.peek() == Some(&Token::Eol) {
            self.at += 1;
        }
    }

    fn unexpected(&self, wanted: &str) -> ConfError {
        ConfError {
            line: self.line(),
            why: match self.peek() {
                Some(token) => format!("{} where {wanted} belongs", token.words()),
                None => format!("the file ends where {wanted} belongs"),
            },
        }
    }

    fn expect(&mut self, token: &Token, wanted: &str) -> Result<(), ConfError> {
        if self.peek() == Some(token) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    /// Elements up to the end of the file (`depth` 0) or a `}`.
    fn elements(&mut self, depth: usize) -> Result<Vec<Element>, ConfError> {
        if depth > DEPTH_MAX {
            return Err(self.unexpected("no deeper `{`"));
        }
        let mut elements = Vec::new();
        loop {
            self.skip_lines();
            match self.peek() {
                None if depth == 0 => return Ok(elements),
                Some(Token::Close) if depth > 0 => return Ok(elements),
                None => return Err(self.unexpected("`}`")),
                _ => elements.push(self.element(depth)?),
            }
        }
    }

    fn element(&mut self, depth: usize) -> Result<Element, ConfError> {
        let line = self.line();
        let key = match self.next() {
            Some(Token::Bare(key)) => key,
            Some(Token::Text(_)) if depth == 0 => return Err(top_level(line, "a string")),
            Some(Token::Text(_)) => return Ok(Element::Other),
            _ => {
                self.at -= 1;
                return Err(self.unexpected("a keyword"));
            }
        };
        if key == "version" && depth == 0 {
            // `version opencryptoki-3.27`: the file's version, a bare word.
            if matches!(self.peek(), Some(Token::Bare(_))) {
                self.at += 1;
                return Ok(Element::Other);
            }
        }
        match self.peek() {
            Some(Token::Equal) if depth == 0 => Err(top_level(line, &format!("`{key} =`"))),
            Some(Token::Equal) => {
                self.at += 1;
                match self.next() {
                    Some(
                        value @ (Token::Number(_)
                        | Token::Version
                        | Token::Text(_)
                        | Token::Bare(_)),
                    ) => Ok(Element::Assign { key, value, line }),
                    _ => {
                        self.at -= 1;
                        Err(self.unexpected(&format!("the value of `{key} =`, on its line")))
                    }
                }
            }
            Some(Token::Number(number)) if depth == 0 && key != "slot" => Err(top_level(
                line,
                &format!("`{key} {number}` (a slot is `slot N {{…}}`, spelled so)"),
            )),
            Some(Token::Number(number)) => {
                let number = *number;
                self.at += 1;
                self.skip_lines();
                self.expect(&Token::Open, &format!("the `{{` of `{key} {number}`"))?;
                let body = self.elements(depth + 1)?;
                self.expect(&Token::Close, "`}`")?;
                if key == "slot" {
                    Ok(Element::Slot { number, line, body })
                } else {
                    Ok(Element::Other)
                }
            }
            _ => {
                let before = self.at;
                self.skip_lines();
                match self.peek() {
                    Some(Token::Open) if depth == 0 => {
                        return Err(top_level(line, &format!("a block `{key} {{…}}`")));
                    }
                    Some(Token::Open) => {
                        self.at += 1;
                        self.elements(depth + 1)?;
                        self.expect(&Token::Close, "`}`")?;
                    }
                    Some(Token::ListOpen) if depth == 0 && key != "statistics" => {
                        return Err(top_level(line, &format!("a list `{key} (…)`")));
                    }
                    Some(Token::ListOpen) => {
                        self.at += 1;
                        self.skip_lines();
                        loop {
                            match self.next() {
                                Some(Token::Bare(_)) => {}
                                _ => {
                                    self.at -= 1;
                                    return Err(self.unexpected("a word of the list"));
                                }
                            }
                            self.skip_lines();
                            match self.next() {
                                Some(Token::Comma) => self.skip_lines(),
                                Some(Token::ListClose) => break,
                                _ => {
                                    self.at -= 1;
                                    return Err(self.unexpected("`,` or `)`"));
                                }
                            }
                        }
                    }
                    // A keyword alone: at the top, only `disable-event-support`.
                    _ if depth == 0 && key != "disable-event-support" => {
                        return Err(top_level(line, &format!("a keyword `{key}`")));
                    }
                    _ => self.at = before,
                }
                Ok(Element::Other)
            }
        }
    }
}

/// What pkcsslotd refuses at the top of the file (`config_parse` in
/// usr/sbin/pkcsslotd/slotmgr.c takes only `version …`, `disable-event-support`,
/// `statistics (…)` and `slot N {…}` there): a misspelled `slot` would hide a token, as a
/// misspelled `stdll` did (adversarial round 11z, F1).
fn top_level(line: usize, what: &str) -> ConfError {
    ConfError {
        line,
        why: format!(
            "{what} at the top of the file: pkcsslotd takes only `version …`, `disable-event-support`, `statistics (…)` and `slot N {{…}}` there, and refuses such a file, so which tokens exist is not known"
        ),
    }
}

/// The EP11 and CCA slots of an `opencryptoki.conf`, in slot order.
pub fn token_slots(text: &str) -> Result<Vec<TokenSlot>, ConfError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        at: 0,
    };
    let elements = parser.elements(0)?;
    let mut seen = std::collections::BTreeMap::new();
    let mut slots = Vec::new();
    for element in elements {
        let Element::Slot { number, line, body } = element else {
            continue;
        };
        if let Some(first) = seen.insert(number, line) {
            return Err(ConfError {
                line,
                why: format!(
                    "slot {number} is described twice (first at line {first}); pkcsslotd refuses such a file"
                ),
            });
        }
        let (mut stdll, mut confname) = (None, None);
        for element in body {
            let (key, text, line) = slot_entry(number, line, element)?;
            let Some(text) = text else { continue };
            match key.as_str() {
                "stdll" => stdll = Some(text),
                "confname" => {
                    let plain =
                        !text.is_empty() && text != "." && text != ".." && !text.contains('/');
                    if !text.starts_with('/') && !plain {
                        return Err(ConfError {
                            line,
                            why: format!(
                                "slot {number}'s confname {} is neither an absolute path nor a plain file name (openCryptoki refuses it)",
                                crate::quote::quote(&text)
                            ),
                        });
                    }
                    confname = Some((text, line));
                }
                _ => {}
            }
        }
        let Some(stdll) = stdll else {
            continue;
        };
        let mode = match library_mode(&stdll) {
            Library::Hsm(mode) => mode,
            Library::NoHsm => continue,
            Library::Unknown => {
                return Err(ConfError {
                    line,
                    why: format!(
                        "slot {number}'s stdll {} is none of openCryptoki's token libraries, so whether its token keeps objects under a master key of these APQNs is not known. Name the library by one of openCryptoki's names ({})",
                        crate::quote::quote(&stdll),
                        LIBRARIES
                            .iter()
                            .map(|(name, _)| *name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        };
        slots.push(TokenSlot {
            slot: number,
            line,
            mode,
            confname,
        });
    }
    slots.sort_by_key(|s| s.slot);
    Ok(slots)
}

/// The keys pkcsslotd takes in a slot (`config_parse_slot` in usr/sbin/pkcsslotd/slotmgr.c),
/// spelled so (it compares with `strcmp`): those that take a string (quoted or bare), then
/// those that take a version.
const SLOT_STRING_KEYS: &[&str] = &[
    "stdll",
    "description",
    "manufacturer",
    "confname",
    "tokname",
    "usergroup",
];
const SLOT_VERSION_KEYS: &[&str] = &["hwversion", "firmwareversion", "tokversion"];

/// One entry of slot `number` (described at `line`), as pkcsslotd takes it: the key, and its
/// text for a key that takes a string. Anything else makes pkcsslotd refuse the whole file
/// ("unexpected token"), so which token the slot holds is not known: a misspelled or
/// upper-case `stdll` once read as "no token here", and the change left that token's objects
/// under a master key no domain kept (adversarial round 11z, F1).
fn slot_entry(
    number: u64,
    line: usize,
    element: Element,
) -> Result<(String, Option<String>, usize), ConfError> {
    let keys = || {
        SLOT_STRING_KEYS
            .iter()
            .chain(SLOT_VERSION_KEYS)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Element::Assign { key, value, line } = element else {
        return Err(ConfError {
            line,
            why: format!(
                "slot {number} holds an entry that is not `key = value`: pkcsslotd takes only {} there, and refuses such a file, so which token the slot holds is not known",
                keys()
            ),
        });
    };
    let text = match &value {
        Token::Text(t) | Token::Bare(t) => Some(t.clone()),
        _ => None,
    };
    let version = |t: &str| {
        t.split_once('.').is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let taken = if SLOT_STRING_KEYS.contains(&key.as_str()) {
        text.is_some()
    } else if SLOT_VERSION_KEYS.contains(&key.as_str()) {
        matches!(value, Token::Version) || text.as_deref().is_some_and(version)
    } else {
        return Err(ConfError {
            line,
            why: format!(
                "slot {number} has a key {} that pkcsslotd does not take (it takes only {}, spelled so), and refuses such a file, so which token the slot holds is not known. Spell it as openCryptoki does",
                crate::quote::quote(&key),
                keys()
            ),
        });
    };
    if !taken {
        return Err(ConfError {
            line,
            why: format!(
                "slot {number}'s `{key}` has a value pkcsslotd does not take ({}), and refuses such a file, so which token the slot holds is not known",
                if SLOT_VERSION_KEYS.contains(&key.as_str()) {
                    "a version is MAJOR.MINOR"
                } else {
                    "a quoted or bare word"
                }
            ),
        });
    }
    Ok((key, text, line))
}

/// What a slot's `stdll` is.
enum Library {
    /// A token whose objects are under the master keys of a mode's APQNs.
    Hsm(GroupMode),
    /// openCryptoki's software, ICA, TPM or ICSF token: no Crypto Express master key.
    NoHsm,
    Unknown,
}

/// openCryptoki's token libraries by file name, and the mode of the HSM ones. Its
/// `Makefile.am` installs each also as a `PKCS11_*.so` link (the names of older releases,
/// which opencryptoki.conf files still use); a version suffix may follow `.so`.
const LIBRARIES: &[(&str, Option<GroupMode>)] = &[
    ("libpkcs11_ep11.so", Some(GroupMode::Ep11)),
    ("PKCS11_EP11.so", Some(GroupMode::Ep11)),
    ("libpkcs11_cca.so", Some(GroupMode::Cca)),
    ("PKCS11_CCA.so", Some(GroupMode::Cca)),
    ("libpkcs11_sw.so", None),
    ("PKCS11_SW.so", None),
    ("libpkcs11_ica.so", None),
    ("PKCS11_ICA.so", None),
    ("libpkcs11_tpm.so", None),
    ("PKCS11_TPM.so", None),
    ("libpkcs11_icsf.so", None),
    ("PKCS11_ICSF.so", None),
];

fn library_mode(stdll: &str) -> Library {
    let name = stdll.rsplit('/').next().unwrap_or(stdll);
    let known = LIBRARIES.iter().find(|(library, _)| {
        name.strip_prefix(library)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    });
    match known {
        Some((_, Some(mode))) => Library::Hsm(*mode),
        Some((_, None)) => Library::NoHsm,
        None => Library::Unknown,
    }
}

#[cfg(test)]
#[path = "ock_conf_tests.rs"]
mod tests;
