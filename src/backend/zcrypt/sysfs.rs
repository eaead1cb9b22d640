//! Reading Crypto Express cards and their APQNs from sysfs, below a sysfs root that the
//! operator names (the s390-tools' `SYSFS_ROOT`; `/sys` on the machine itself). Every path is
//! under that root: unlike zkey's discovery, which always scans `/sys/devices/ap`, a test tree
//! or a copy of another machine's sysfs is never mixed with this machine's cards.
//!
//! An APQN is usable as zkey decides: its card is online, configured and not check-stopped
//! (where the kernel has those attributes), is a CCA or EP11 coprocessor (`type` `CEXnC` or
//! `CEXnP`), and the queue itself is online.

use std::fmt;
use std::path::{Path, PathBuf};

use super::mkvps::Mkvps;

/// An attribute is a line or a few: anything longer is not sysfs.
const ATTRIBUTE_BYTES_MAX: u64 = 4096;

pub use crate::model::domain_group::Apqn;

/// What a card runs as, from the last letter of its `type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardMode {
    Cca,
    Ep11,
    /// `CEXnA`: no master keys.
    Accelerator,
    /// A type mkplan does not know; never usable.
    Other(String),
}

/// A card as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    pub number: u8,
    /// `type`, as in `CEX8P`.
    pub kind: String,
    /// The generation, the digit of `CEXn…`.
    pub generation: Option<u8>,
    pub mode: CardMode,
    pub online: bool,
    /// `None` where the kernel has no such attribute (before 5.10).
    pub config: Option<bool>,
    pub chkstop: Option<bool>,
    /// The card's serial number; `None` when the kernel shows none or the query failed. A
    /// card swapped behind an APQN shows another.
    pub serial: Option<String>,
    pub queues: Vec<Queue>,
}

impl Card {
    /// Online, configured, not check-stopped, and a CCA or EP11 coprocessor.
    pub fn usable(&self) -> bool {
        self.online
            && self.config != Some(false)
            && self.chkstop != Some(true)
            && matches!(self.mode, CardMode::Cca | CardMode::Ep11)
    }
}

/// One APQN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub apqn: Apqn,
    pub online: bool,
    /// `None` when the kernel shows no `mkvps` (an accelerator, or a kernel before 5.4), or
    /// when it contradicts itself.
    pub mkvps: Option<Mkvps>,
    /// The queue's `mkvps` contradicts itself (`mkvps`'s module says what counts): evidence
    /// that disagrees, for the reader of this APQN to refuse. An unreadable `mkvps` is an
    /// error of the whole tree instead.
    pub contradiction: Option<SysfsError>,
}

/// A sysfs tree below its root.
pub struct Sysfs {
    root: PathBuf,
}

/// Why the tree could not be read: the file, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsError {
    pub path: PathBuf,
    pub why: String,
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", crate::quote::path(&self.path), self.why)
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn ap_devices(&self) -> PathBuf {
        self.root.join("devices/ap")
    }

    /// Every card with its APQNs, in card and domain order.
    pub fn cards(&self) -> Result<Vec<Card>, SysfsError> {
        let folder = self.ap_devices();
        let mut cards = Vec::new();
        for name in entries(&folder)? {
            if let Some(number) = name.strip_prefix("card").and_then(|n| hex_exact(n, 2)) {
                let number = u8::try_from(number).expect("two hex digits");
                cards.push(self.card(number)?);
            }
        }
        cards.sort_by_key(|c| c.number);
        Ok(cards)
    }

    /// One card and its APQNs.
    pub fn card(&self, number: u8) -> Result<Card, SysfsError> {
        let folder = self.ap_devices().join(format!("card{number:02x}"));
        let kind = attribute(&folder.join("type"))?;
        let (generation, mode) = mode_of(&kind);
        let card = Card {
            number,
            generation,
            mode,
            online: flag(&folder.join("online"))?,
            config: optional(&folder.join("config"), flag)?,
            chkstop: optional(&folder.join("chkstop"), flag)?,
            serial: optional(&folder.join("serialnr"), attribute)?.filter(|s| !s.is_empty()),
            queues: self.queues(&folder, number)?,
            kind,
        };
        check_functions(&folder, &card)?;
        Ok(card)
    }

    fn queues(&self, card_folder: &Path, card: u8) -> Result<Vec<Queue>, SysfsError> {
        let mut queues = Vec::new();
        for name in entries(card_folder)? {
            let Some((c, d)) = name.split_once('.') else {
                continue;
            };
            let (Some(c), Some(domain)) = (hex_exact(c, 2), hex_exact(d, 4)) else {
                continue;
            };
            if c != u32::from(card) {
                continue;
            }
            let folder = card_folder.join(&name);
            let mut contradiction = None;
            let mkvps = optional(&folder.join("mkvps"), |path| {
                let text = read(path)?;
                match Mkvps::parse(&text) {
                    Ok(mkvps) => Ok(Some(mkvps)),
                    Err(e) => {
                        let error = SysfsError {
                            path: path.to_path_buf(),
                            why: e.to_string(),
                        };
                        if !e.contradicts {
                            return Err(error);
                        }
                        contradiction = Some(error);
                        Ok(None)
                    }
                }
            })?
            .flatten();
            queues.push(Queue {
                apqn: Apqn {
                    card,
                    domain: u16::try_from(domain).expect("four hex digits"),
                },
                online: flag(&folder.join("online"))?,
                mkvps,
                contradiction,
            });
        }
        queues.sort_by_key(|q| q.apqn);
        Ok(queues)
    }
}

/// `CEX8P` → generation 8, EP11; `CEX7C` → CCA; `CEX7A` → accelerator (zkey reads the 4th and
/// 5th characters).
fn mode_of(kind: &str) -> (Option<u8>, CardMode) {
    let bytes = kind.as_bytes();
    let generation = (bytes.len() == 5 && kind.starts_with("CEX"))
        .then(|| (bytes[3] as char).to_digit(10))
        .flatten()
        .and_then(|g| u8::try_from(g).ok());
    let mode = match (generation, bytes.last()) {
        (Some(_), Some(b'C')) => CardMode::Cca,
        (Some(_), Some(b'P')) => CardMode::Ep11,
        (Some(_), Some(b'A')) => CardMode::Accelerator,
        _ => CardMode::Other(kind.to_string()),
    };
    (generation, mode)
}

/// `ap_functions`' mode bits agree with `type` (bits counted from the most significant:
/// `0x10000000` CCA, `0x08000000` accelerator, `0x04000000` EP11). A card that says one thing
/// in one file and another in the other is not read as either.
fn check_functions(folder: &Path, card: &Card) -> Result<(), SysfsError> {
    const CCA: u32 = 0x1000_0000;
    const ACCELERATOR: u32 = 0x0800_0000;
    const EP11: u32 = 0x0400_0000;
    let path = folder.join("ap_functions");
    let Some(text) = optional(&path, attribute)? else {
        return Ok(());
    };
    let functions = text
        .strip_prefix("0x")
        .and_then(|h| hex_exact(h, 8))
        .ok_or_else(|| SysfsError {
            path: path.clone(),
            why: format!("{} is not 0x and 8 hex digits", crate::quote::quote(&text)),
        })?;
    let says = match (functions & CCA, functions & EP11, functions & ACCELERATOR) {
        (0, 0, 0) => return Ok(()),
        (_, 0, 0) => CardMode::Cca,
        (0, _, 0) => CardMode::Ep11,
        (0, 0, _) => CardMode::Accelerator,
        _ => {
            return Err(SysfsError {
                path,
                why: format!("{text} claims more than one mode"),
            });
        }
    };
    if matches!(card.mode, CardMode::Other(_)) || says == card.mode {
        return Ok(());
    }
    Err(SysfsError {
        path,
        why: format!(
            "{text} says {says:?}, but type says {} ({:?}); mkplan does not choose between them",
            card.kind, card.mode
        ),
    })
}

fn entries(folder: &Path) -> Result<Vec<String>, SysfsError> {
    let listing = std::fs::read_dir(folder).map_err(|e| SysfsError {
        path: folder.to_path_buf(),
        why: format!("cannot list it: {e}"),
    })?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| SysfsError {
            path: folder.to_path_buf(),
            why: format!("cannot list it: {e}"),
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn read(path: &Path) -> Result<String, SysfsError> {
    crate::bounded_read::read_to_string(path, ATTRIBUTE_BYTES_MAX).map_err(|e| SysfsError {
        path: path.to_path_buf(),
        why: format!("cannot read it: {e}"),
    })
}

/// An attribute of one line, trimmed.
fn attribute(path: &Path) -> Result<String, SysfsError> {
    Ok(read(path)?.trim().to_string())
}

/// `1` or `0`.
fn flag(path: &Path) -> Result<bool, SysfsError> {
    match attribute(path)?.as_str() {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(SysfsError {
            path: path.to_path_buf(),
            why: format!("{} is neither 1 nor 0", crate::quote::quote(other)),
        }),
    }
}

/// The attribute read by `read_it`, or `None` when the kernel has no such file.
fn optional<T>(
    path: &Path,
    read_it: impl FnOnce(&Path) -> Result<T, SysfsError>,
) -> Result<Option<T>, SysfsError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    read_it(path).map(Some)
}

/// Exactly `len` hex digits.
fn hex_exact(digits: &str, len: usize) -> Option<u32> {
    (digits.len() == len && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(digits, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::zcrypt::mkvps::{MkType, Register, State};

    /// Writes a card's attributes and its queues' under `root/devices/ap`.
    fn card(root: &Path, number: u8, files: &[(&str, &str)], queues: &[(u16, &[(&str, &str)])]) {
        let folder = root.join(format!("devices/ap/card{number:02x}"));
        std::fs::create_dir_all(&folder).unwrap();
        for (name, text) in files {
            std::fs::write(folder.join(name), format!("{text}\n")).unwrap();
        }
        for (domain, files) in queues {
            let queue = folder.join(format!("{number:02x}.{domain:04x}"));
            std::fs::create_dir_all(&queue).unwrap();
            for (name, text) in *files {
                std::fs::write(queue.join(name), text).unwrap();
            }
        }
    }

    const EP11_MKVPS: &str = "WK CUR: valid 0xa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90\nWK NEW: empty -\n";

    #[test]
    fn cards_and_apqns_are_read_below_the_root_in_order() {
        let root = tempfile::tempdir().unwrap();
        let ep11 = [
            ("type", "CEX8P"),
            ("ap_functions", "0x04800000"),
            ("online", "1"),
            ("config", "1"),
            ("chkstop", "0"),
            ("serialnr", "93AABC01234567"),
        ];
        card(
            root.path(),
            0x0b,
            &ep11,
            &[
                (0x0006, &[("online", "1\n"), ("mkvps", EP11_MKVPS)]),
                (
                    0x0005,
                    &[("online", "0\n"), ("mkvps", "WK CUR: - -\nWK NEW: - -\n")],
                ),
            ],
        );
        card(
            root.path(),
            0x03,
            &[("type", "CEX7A"), ("online", "1"), ("serialnr", "")],
            &[(0x0006, &[("online", "1\n")])],
        );
        // Not cards: other entries of devices/ap.
        std::fs::create_dir_all(root.path().join("devices/ap/cardzz")).unwrap();
        std::fs::write(root.path().join("devices/ap/uevent"), "").unwrap();

        let cards = Sysfs::new(root.path()).cards().unwrap();
        assert_eq!(cards.iter().map(|c| c.number).collect::<Vec<_>>(), [3, 11]);
        let accelerator = &cards[0];
        assert_eq!(accelerator.mode, CardMode::Accelerator);
        assert!(!accelerator.usable());
        assert_eq!(accelerator.serial, None);
        assert_eq!(accelerator.queues[0].mkvps, None);
        let ep11 = &cards[1];
        assert_eq!(
            (ep11.mode.clone(), ep11.generation),
            (CardMode::Ep11, Some(8))
        );
        assert!(ep11.usable());
        assert_eq!(ep11.serial.as_deref(), Some("93AABC01234567"));
        let apqns: Vec<String> = ep11.queues.iter().map(|q| q.apqn.to_string()).collect();
        assert_eq!(apqns, ["0b.0005", "0b.0006"]);
        assert!(!ep11.queues[0].online);
        let mkvps = ep11.queues[1].mkvps.as_ref().unwrap();
        assert_eq!(
            mkvps.get(MkType::Wk, Register::New).unwrap().state,
            State::Empty
        );
    }

    #[test]
    fn a_card_offline_unconfigured_or_check_stopped_is_not_usable() {
        for (file, value) in [("online", "0"), ("config", "0"), ("chkstop", "1")] {
            let root = tempfile::tempdir().unwrap();
            let mut files = vec![
                ("type", "CEX7C"),
                ("online", "1"),
                ("config", "1"),
                ("chkstop", "0"),
            ];
            files.retain(|(name, _)| *name != file);
            files.push((file, value));
            card(root.path(), 1, &files, &[]);
            let card = Sysfs::new(root.path()).card(1).unwrap();
            assert!(!card.usable(), "{file}={value}");
        }
    }

    #[test]
    fn a_type_and_functions_that_disagree_or_a_bad_file_are_refused_with_the_path() {
        for (files, expected) in [
            (
                &[
                    ("type", "CEX7C"),
                    ("ap_functions", "0x04800000"),
                    ("online", "1"),
                ][..],
                "type says CEX7C",
            ),
            (
                &[
                    ("type", "CEX7C"),
                    ("ap_functions", "0x14000000"),
                    ("online", "1"),
                ][..],
                "more than one mode",
            ),
            (
                &[("type", "CEX7C"), ("online", "yes")][..],
                "card01/online: \"yes\" is neither 1 nor 0",
            ),
            (&[("online", "1")][..], "card01/type: cannot read it"),
        ] {
            let root = tempfile::tempdir().unwrap();
            card(root.path(), 1, files, &[]);
            let error = Sysfs::new(root.path()).cards().unwrap_err().to_string();
            assert!(error.contains(expected), "{files:?}: {error}");
        }
        let root = tempfile::tempdir().unwrap();
        card(
            root.path(),
            1,
            &[("type", "CEX7P"), ("online", "1")],
            &[(6, &[("online", "1\n"), ("mkvps", "WK CUR: valid 0x12\n")])],
        );
        let error = Sysfs::new(root.path()).cards().unwrap_err().to_string();
        assert!(error.contains("card01/01.0006/mkvps: line 1:"), "{error}");
    }

    #[test]
    fn a_missing_root_says_which_folder() {
        let error = Sysfs::new("/nonexistent-sysfs")
            .cards()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/nonexistent-sysfs/devices/ap: cannot list it"),
            "{error}"
        );
    }

    #[test]
    fn apqns_are_written_and_read_as_zkey_does() {
        let apqn: Apqn = "03.0006".parse().unwrap();
        assert_eq!(apqn, Apqn { card: 3, domain: 6 });
        assert_eq!(apqn.to_string(), "03.0006");
        assert_eq!("ff.00ff".parse::<Apqn>().unwrap().to_string(), "ff.00ff");
        for bad in ["3", "03.", "100.0006", "03.10000", "03.00g6", "03.0006.1"] {
            assert!(bad.parse::<Apqn>().is_err(), "{bad}");
        }
    }
}
