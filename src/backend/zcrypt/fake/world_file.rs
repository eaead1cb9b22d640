//! The world file an operator or a test writes (`mkplan sim zcrypt init DIR --world
//! WORLD.yaml`): cards with their domains and registers, zkey keys, openCryptoki tokens, faults
//! and latency. Read strictly: an unknown key, a bad APQN or VP, or a key on an APQN that is not
//! there is refused with the file, line and column where it can be placed, and a fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::world::{
    ApplicationKey, Card, Domain, Fault, KeyType, Luks2Header, Mk, NewRegister, Registers, Volume,
    World, ZkeyKey, apqn_name,
};
use super::world_tokens::{TokenYaml, token_of};
use crate::model::{InputError, KeyWords};

const KEY_WORDS: KeyWords = &[
    (
        "card",
        "a card number, two hex digits in quotes, as in \"03\"",
    ),
    (
        "domain",
        "a domain number, four hex digits in quotes, as in \"0006\"",
    ),
    ("latency_ms", "a whole number of milliseconds"),
    ("online", "true or false"),
    ("config", "true or false"),
    ("chkstop", "true or false"),
    ("ep11_header", "true or false"),
    ("slot", "a whole number"),
    ("user_pin", "the token's USER PIN, quoted"),
    ("times", "a whole number"),
    ("skip", "a whole number"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorldYaml {
    #[serde(default)]
    latency_ms: u64,
    /// The kernel whose sysfs is shown, "MAJOR.MINOR" (default: the newest).
    #[serde(default)]
    kernel: Option<String>,
    cards: Vec<CardYaml>,
    #[serde(default)]
    zkey: Vec<KeyYaml>,
    #[serde(default)]
    opencryptoki: Vec<TokenYaml>,
    #[serde(default)]
    faults: Vec<Fault>,
    #[serde(default)]
    applications: Vec<ApplicationYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationYaml {
    name: String,
    /// The MK type: WK (EP11), AES, APKA, ASYM, SYM.
    #[serde(rename = "type")]
    mk: String,
    apqns: Vec<String>,
    mkvp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardYaml {
    card: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    serialnr: Option<String>,
    #[serde(default = "yes")]
    online: bool,
    #[serde(default = "yes")]
    config: bool,
    #[serde(default)]
    chkstop: bool,
    #[serde(default)]
    domains: Vec<DomainYaml>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainYaml {
    domain: String,
    #[serde(default = "yes")]
    online: bool,
    #[serde(default, rename = "WK")]
    wk: Option<Registers>,
    #[serde(default, rename = "AES")]
    aes: Option<Registers>,
    #[serde(default, rename = "APKA")]
    apka: Option<Registers>,
    #[serde(default, rename = "ASYM")]
    asym: Option<Registers>,
    #[serde(default, rename = "SYM")]
    sym: Option<Registers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyYaml {
    name: String,
    key_type: KeyType,
    #[serde(default)]
    apqns: Vec<String>,
    /// The MK the `.skey` is enciphered under.
    mkvp: String,
    /// A staged copy (`.renc`) left under this MK.
    #[serde(default)]
    renc_mkvp: Option<String>,
    #[serde(default)]
    xts: bool,
    /// EP11-AES only: false for a key without the 16-byte header (made before s390-tools
    /// 2.30.0, or by zkey's fallback on a kernel without PKEY_TYPE_EP11_AES).
    #[serde(default)]
    ep11_header: Option<bool>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    volume: Option<VolumeYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeYaml {
    device: String,
    dm_name: String,
    #[serde(default = "luks2")]
    volume_type: String,
    /// The MK of the LUKS2 header's copy, if not the `.skey`'s.
    #[serde(default)]
    header_mkvp: Option<String>,
    /// The file holding the passphrase of the LUKS2 header's keyslots (relative to the
    /// world file's folder): `zkey-cryptsetup --key-file` must name one with the same bytes.
    #[serde(default)]
    key_file: Option<String>,
}

fn luks2() -> String {
    "luks2".into()
}

/// Parses a world file into the truth. `mkplan` is the binary the fake tools will exec.
/// `folder` is where the world file's relative paths (a LUKS2 volume's `key_file`) start.
pub fn parse(file: &str, text: &str, folder: &Path, mkplan: PathBuf) -> Result<World, InputError> {
    let yaml: WorldYaml = crate::model::from_yaml_str(text).map_err(|e| {
        InputError::from_yaml(
            file,
            text,
            &e,
            KEY_WORDS,
            "correct the world file at that place; plans/zcrypt-world.yaml is an example and docs/zcrypt-sim.md describes every key",
        )
    })?;
    let fail = |message: String| {
        let error = InputError::new(file, message.clone())
            .fix("correct the world file; docs/zcrypt-sim.md describes every key");
        match place(text, &message) {
            Some((line, column)) => error.at(text, line, column),
            None => error,
        }
    };
    let mut cards = Vec::new();
    let mut seen = BTreeSet::new();
    for card in yaml.cards {
        cards.push(card_of(card, &mut seen).map_err(fail)?);
    }
    let mut world = World {
        mkplan,
        latency_ms: yaml.latency_ms,
        kernel: match &yaml.kernel {
            None => super::world::newest_kernel(),
            Some(text) => kernel_of(text).map_err(fail)?,
        },
        faults: yaml.faults,
        cards,
        keys: Vec::new(),
        luks2: Vec::new(),
        tokens: Vec::new(),
        operations: Vec::new(),
        applications: Vec::new(),
        lost: BTreeSet::new(),
        next_operation: 1,
        history: vec!["init".into()],
        incidents: Vec::new(),
        warnings: Vec::new(),
    };
    for fault in &world.faults {
        if fault.kind == super::world::FaultKind::ApqnOffline && fault.apqn.is_none() {
            return Err(fail(
                "faults: apqn_offline needs `apqn: \"CARD.DOMAIN\"`".into(),
            ));
        }
        if let Some(apqn) = &fault.apqn
            && world.find(&apqn.to_ascii_lowercase()).is_none()
        {
            return Err(fail(format!("fault: no APQN \"{apqn}\" among the cards")));
        }
    }
    for (index, key) in yaml.zkey.into_iter().enumerate() {
        let key = key_of(&world, key, index, folder).map_err(fail)?;
        if world.keys.iter().any(|k| k.name == key.0.name) {
            return Err(fail(format!("zkey: key \"{}\" is given twice", key.0.name)));
        }
        world.keys.push(key.0);
        world.luks2.extend(key.1);
    }
    for app in yaml.applications {
        let app = application_of(&world, app).map_err(fail)?;
        if world.applications.iter().any(|a| a.name == app.name) {
            return Err(fail(format!(
                "applications: \"{}\" is given twice",
                app.name
            )));
        }
        world.applications.push(app);
    }
    for token in yaml.opencryptoki {
        let token = token_of(&world, token).map_err(fail)?;
        if world.tokens.iter().any(|t| t.slot == token.slot) {
            return Err(fail(format!(
                "opencryptoki: slot {} is given twice",
                token.slot
            )));
        }
        world.tokens.push(token);
    }
    Ok(world)
}

fn kernel_of(text: &str) -> Result<(u32, u32), String> {
    text.split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .ok_or_else(|| format!("kernel \"{text}\" is not MAJOR.MINOR, as in 5.10"))
}

fn hex_number(text: &str, digits: usize, what: &str) -> Result<u32, String> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
        .ok_or_else(|| format!("{what} {text:?} is not {digits} hex digits (quote it in YAML)"))
}

fn card_of(card: CardYaml, seen: &mut BTreeSet<String>) -> Result<Card, String> {
    let number = hex_number(&card.card, 2, "card")? as u8;
    let kind = card.kind;
    let valid_type = kind.len() == 5
        && kind.starts_with("CEX")
        && kind.as_bytes()[3].is_ascii_digit()
        && matches!(kind.as_bytes()[4], b'C' | b'P' | b'A');
    if !valid_type {
        return Err(format!(
            "card {}: type {kind:?} is not CEXn followed by C (CCA), P (EP11) or A (accelerator)",
            card.card
        ));
    }
    let ep11 = kind.ends_with('P');
    let mut domains = Vec::new();
    for domain in card.domains {
        let d = hex_number(&domain.domain, 4, "domain")? as u16;
        let apqn = apqn_name(number, d);
        if !seen.insert(apqn.clone()) {
            return Err(format!("APQN \"{apqn}\" is given twice"));
        }
        let mut registers = BTreeMap::new();
        for (mk, regs) in [
            (Mk::Wk, domain.wk),
            (Mk::Aes, domain.aes),
            (Mk::Apka, domain.apka),
            (Mk::Asym, domain.asym),
            (Mk::Sym, domain.sym),
        ] {
            let Some(regs) = regs else { continue };
            if mk.is_ep11() != ep11 || kind.ends_with('A') {
                return Err(format!(
                    "APQN {apqn}: a {kind} card has no {} registers",
                    mk.name()
                ));
            }
            registers.insert(mk, check_registers(&apqn, mk, regs)?);
        }
        if ep11 {
            registers.entry(Mk::Wk).or_default();
        } else if kind.ends_with('C') {
            for mk in [Mk::Aes, Mk::Apka, Mk::Asym, Mk::Sym] {
                registers.entry(mk).or_default();
            }
        }
        domains.push(Domain {
            domain: d,
            online: domain.online,
            registers,
        });
    }
    let serialnr = card.serialnr.unwrap_or_else(|| {
        if ep11 {
            format!("93AABC{number:02X}00000000")
        } else {
            format!("93AAC{number:03X}")
        }
    });
    Ok(Card {
        card: number,
        kind,
        serialnr,
        online: card.online,
        config: card.config,
        chkstop: card.chkstop,
        domains,
    })
}

/// Lower-case hex of exactly `len` digits.
pub fn vp_of(text: &str, len: usize, what: &str) -> Result<String, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.len() == len && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digits.to_ascii_lowercase())
    } else {
        Err(format!(
            "{what}: {text:?} is not a verification pattern of {len} hex digits"
        ))
    }
}

fn check_registers(apqn: &str, mk: Mk, regs: Registers) -> Result<Registers, String> {
    let len = mk.vp_hex_len();
    let what = |reg: &str| format!("APQN {apqn} {} {reg}", mk.name());
    let new = match regs.new {
        NewRegister::Uncommitted(vp) if mk.is_ep11() => {
            NewRegister::Uncommitted(vp_of(&vp, len, &what("new"))?)
        }
        NewRegister::Committed(vp) if mk.is_ep11() => {
            NewRegister::Committed(vp_of(&vp, len, &what("new"))?)
        }
        NewRegister::Full(vp) if !mk.is_ep11() => NewRegister::Full(vp_of(&vp, len, &what("new"))?),
        NewRegister::Partial if !mk.is_ep11() => NewRegister::Partial,
        NewRegister::Empty => NewRegister::Empty,
        other => {
            return Err(format!(
                "{}: {} is not a state of this register (EP11: empty, uncommitted, committed; CCA: empty, partial, full)",
                what("new"),
                describe(&other)
            ));
        }
    };
    if mk.is_ep11() && regs.old.is_some() {
        return Err(format!("{}: EP11 has no OLD register", what("old")));
    }
    Ok(Registers {
        new,
        current: regs
            .current
            .map(|vp| vp_of(&vp, len, &what("current")))
            .transpose()?,
        old: regs
            .old
            .map(|vp| vp_of(&vp, len, &what("old")))
            .transpose()?,
    })
}

fn describe(new: &NewRegister) -> String {
    match new {
        NewRegister::Empty => "empty".into(),
        NewRegister::Partial => "partial".into(),
        NewRegister::Uncommitted(vp) => format!("uncommitted \"{vp}\""),
        NewRegister::Committed(vp) => format!("committed \"{vp}\""),
        NewRegister::Full(vp) => format!("full \"{vp}\""),
    }
}

fn key_of(
    world: &World,
    key: KeyYaml,
    index: usize,
    folder: &Path,
) -> Result<(ZkeyKey, Option<Luks2Header>), String> {
    let valid_name = !key.name.is_empty()
        && key.name.len() <= 64
        && key
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !key.name.starts_with('.');
    if !valid_name {
        return Err(format!(
            "zkey key {:?}: a name is letters, digits, '-', '_' and '.'",
            key.name
        ));
    }
    let mk = key.key_type.mk();
    let what = |field: &str| format!("zkey key {} {field}", key.name);
    let mut apqns = Vec::new();
    for apqn in &key.apqns {
        let apqn = apqn.to_ascii_lowercase();
        let Some((card, _)) = world.find(&apqn) else {
            return Err(format!(
                "{}: no APQN \"{apqn}\" among the cards",
                what("apqns")
            ));
        };
        if card.is_ep11() != mk.is_ep11() || !(card.is_ep11() || card.is_cca()) {
            return Err(format!(
                "{}: {apqn} is on a {} card, not for a {} key",
                what("apqns"),
                card.kind,
                key.key_type.name()
            ));
        }
        apqns.push(apqn);
    }
    let mkvp = vp_at_least(&key.mkvp, key.key_type.mkvp_hex_len(), &what("mkvp"))?;
    let renc = key
        .renc_mkvp
        .as_deref()
        .map(|vp| vp_at_least(vp, key.key_type.mkvp_hex_len(), &what("renc_mkvp")))
        .transpose()?;
    let mut header = None;
    let volume = match key.volume {
        None => None,
        Some(v) => {
            let luks2 = match v.volume_type.as_str() {
                "luks2" => true,
                "plain" => false,
                other => {
                    return Err(format!(
                        "{}: volume_type {other:?} is luks2 or plain",
                        what("volume")
                    ));
                }
            };
            if luks2 {
                let active = match v.header_mkvp {
                    Some(vp) => {
                        vp_at_least(&vp, key.key_type.mkvp_hex_len(), &what("header_mkvp"))?
                    }
                    None => mkvp.clone(),
                };
                let Some(key_file) = &v.key_file else {
                    return Err(format!(
                        "{}: a luks2 volume needs `key_file:`, the file holding its passphrase",
                        what("volume")
                    ));
                };
                header = Some(Luks2Header {
                    device: v.device.clone(),
                    key_name: key.name.clone(),
                    active,
                    staged: None,
                    unbound: Vec::new(),
                    passphrase_sha256: super::cryptsetup::passphrase_sha256(&folder.join(key_file))
                        .map_err(|why| format!("{}: {why}", what("volume key_file")))?,
                });
            }
            Some(Volume {
                device: v.device,
                dm_name: v.dm_name,
                luks2,
            })
        }
    };
    let ep11_header = match (key.key_type, key.ep11_header) {
        (_, None) => true,
        (KeyType::Ep11Aes, Some(header)) => header,
        (_, Some(_)) => {
            return Err(format!(
                "{}: only an EP11-AES key has an ep11_header to keep or leave out; remove it",
                what("ep11_header")
            ));
        }
    };
    let pattern = super::render::own_pattern(&key.name, index);
    Ok((
        ZkeyKey {
            name: key.name,
            key_type: key.key_type,
            apqns,
            xts: key.xts,
            ep11_header,
            description: key.description,
            volume,
            skey: mkvp,
            renc,
            verification_pattern: pattern,
            creation_time: "2026-01-01 00:00:00".into(),
            reencipher_time: None,
        },
        header,
    ))
}

/// A key's MKVP: at least the digits its token carries (more, a whole register VP, is kept).
pub(super) fn vp_at_least(text: &str, len: usize, what: &str) -> Result<String, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.len() >= len && digits.len() <= 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digits.to_ascii_lowercase())
    } else {
        Err(format!(
            "{what}: {text:?} is not a master key verification pattern of at least {len} hex digits"
        ))
    }
}

fn application_of(world: &World, app: ApplicationYaml) -> Result<ApplicationKey, String> {
    let what = format!("application key {}", app.name);
    let mk = Mk::parse(&app.mk).ok_or_else(|| {
        format!(
            "{what}: type \"{}\" is one of WK, AES, APKA, ASYM, SYM",
            app.mk
        )
    })?;
    let mut apqns = Vec::new();
    for apqn in &app.apqns {
        let apqn = apqn.to_ascii_lowercase();
        if world.registers(&apqn, mk).is_none() {
            return Err(format!(
                "{what}: APQN \"{apqn}\" has no {} master key",
                mk.name()
            ));
        }
        apqns.push(apqn);
    }
    if apqns.is_empty() {
        return Err(format!("{what}: name its APQNs"));
    }
    let len = if mk.is_ep11() { 32 } else { 16 };
    Ok(ApplicationKey {
        mkvp: vp_at_least(&app.mkvp, len, &what)?,
        name: app.name,
        mk,
        apqns,
        staged: None,
    })
}

/// Where in the file the value a message quotes (its first `"…"`) is written, if it is: the
/// checks after parsing name the value, and this finds its line and column.
fn place(text: &str, message: &str) -> Option<(u64, u64)> {
    let start = message.find('"')? + 1;
    let length = message[start..].find('"')?;
    let value = &message[start..start + length];
    if value.is_empty() {
        return None;
    }
    for (index, line) in text.lines().enumerate() {
        if let Some(column) = line.find(value) {
            let before = &line[..column];
            let column = if before.ends_with(['"', '\'']) {
                column - 1
            } else {
                column
            };
            return Some((index as u64 + 1, column as u64 + 1));
        }
    }
    None
}
