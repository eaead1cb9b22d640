//! The views of the truth that real readers read: a sysfs tree in the kernel's format
//! (`DIR/sys`) and a zkey repository in zkey's format (`DIR/zkey`). Written after every change;
//! a file whose content is unchanged is not rewritten.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::world::{
    Card, Domain, KeyType, Mk, NewRegister, World, ZkeyKey, apqn_name, write_durably,
};

/// `DIR/sys`: what `SYSFS_ROOT` names.
pub const SYSFS_DIR: &str = "sys";
/// `DIR/zkey`: what `ZKEY_REPOSITORY` names.
pub const ZKEY_DIR: &str = "zkey";

/// Writes every view.
pub fn render(dir: &Path, world: &World) -> Result<(), String> {
    render_sysfs(&dir.join(SYSFS_DIR), world)?;
    render_zkey(&dir.join(ZKEY_DIR), world)?;
    for (file, entries) in [
        (super::incidents::INCIDENTS_FILE, &world.incidents),
        (super::incidents::WARNINGS_FILE, &world.warnings),
    ] {
        write_if_changed(
            &dir.join(file),
            super::incidents::json_lines(entries).as_bytes(),
        )?;
    }
    Ok(())
}

fn write_if_changed(path: &Path, text: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    write_durably(path, text)
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path)
        .map_err(|e| format!("{}: cannot create it: {e}", crate::quote::path(path)))
}

fn symlink(target: &str, link: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(link).is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("{}: cannot link it: {e}", crate::quote::path(link)))
}

fn render_sysfs(root: &Path, world: &World) -> Result<(), String> {
    let devices = root.join("devices/ap");
    let bus = root.join("bus/ap/devices");
    mkdir(&devices)?;
    mkdir(&bus)?;
    let default_domain = world
        .cards
        .iter()
        .flat_map(|c| c.domains.first())
        .map(|d| d.domain)
        .next()
        .unwrap_or(0);
    write_if_changed(
        &root.join("bus/ap/ap_domain"),
        format!("{default_domain}\n").as_bytes(),
    )?;
    for card in &world.cards {
        let name = format!("card{:02x}", card.card);
        let folder = devices.join(&name);
        mkdir(&folder)?;
        symlink(&format!("../../../devices/ap/{name}"), &bus.join(&name))?;
        for (file, text) in card_attributes(card, world.kernel) {
            write_if_changed(&folder.join(file), format!("{text}\n").as_bytes())?;
        }
        for domain in &card.domains {
            let apqn = apqn_name(card.card, domain.domain);
            let queue = folder.join(&apqn);
            mkdir(&queue)?;
            symlink(
                &format!("../../../devices/ap/{name}/{apqn}"),
                &bus.join(&apqn),
            )?;
            let online = card.online && card.config && domain.online;
            write_if_changed(&queue.join("online"), if online { b"1\n" } else { b"0\n" })?;
            if let Some(text) = mkvps(card, domain, online && !card.chkstop, world.kernel) {
                write_if_changed(&queue.join("mkvps"), text.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// The card's attributes the kernel has: `config` since 5.10, `chkstop` since 5.19 (later in
/// fact; close enough for a reader that must accept either), CCA `serialnr` since 5.4, the
/// EP11 extras since 5.6.
fn card_attributes(card: &Card, kernel: (u32, u32)) -> Vec<(&'static str, String)> {
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    let functions = if card.is_ep11() {
        "0x04800000"
    } else if card.is_cca() {
        "0x92800000"
    } else {
        "0x08800000"
    };
    let mut attributes = vec![
        ("type", card.kind.clone()),
        ("hwtype", (u32::from(card.generation()) + 6).to_string()),
        ("ap_functions", functions.to_string()),
        ("online", flag(card.online)),
    ];
    if kernel >= (5, 10) {
        attributes.push(("config", flag(card.config)));
    }
    if kernel >= (5, 19) {
        attributes.push(("chkstop", flag(card.chkstop)));
    }
    let serial_since = if card.is_ep11() { (5, 6) } else { (5, 4) };
    if (card.is_ep11() || card.is_cca()) && kernel >= serial_since {
        let answers = card.online && card.config && !card.chkstop;
        attributes.push((
            "serialnr",
            if answers {
                card.serialnr.clone()
            } else {
                String::new()
            },
        ));
    }
    if card.is_ep11() && kernel >= (5, 6) {
        attributes.push(("API_ordinalnr", "4".into()));
        attributes.push(("FW_version", "0x00000201".into()));
        attributes.push(("op_modes", String::new()));
    }
    attributes
}

/// The kernel's `mkvps` text; `None` for an accelerator or a kernel without it (CCA before
/// 5.4, EP11 before 5.6). `answers` false: the card is not queried (offline queue), every
/// register shows `- -`. CCA shows AES, then APKA since 5.10, ASYM since 5.19.
pub fn mkvps(card: &Card, domain: &Domain, answers: bool, kernel: (u32, u32)) -> Option<String> {
    let mut text = String::new();
    if card.is_ep11() && kernel < (5, 6) || card.is_cca() && kernel < (5, 4) {
        return None;
    }
    if card.is_ep11() {
        let regs = domain.registers.get(&Mk::Wk).cloned().unwrap_or_default();
        if !answers {
            return Some("WK CUR: - -\nWK NEW: - -\n".into());
        }
        match &regs.current {
            Some(vp) => text.push_str(&format!("WK CUR: valid 0x{vp}\n")),
            None => text.push_str("WK CUR: invalid -\n"),
        }
        match &regs.new {
            NewRegister::Uncommitted(vp) => text.push_str(&format!("WK NEW: uncommitted 0x{vp}\n")),
            NewRegister::Committed(vp) => text.push_str(&format!("WK NEW: committed 0x{vp}\n")),
            _ => text.push_str("WK NEW: empty -\n"),
        }
        return Some(text);
    }
    if !card.is_cca() {
        return None;
    }
    let types: &[Mk] = if kernel >= (5, 19) {
        &[Mk::Aes, Mk::Apka, Mk::Asym]
    } else if kernel >= (5, 10) {
        &[Mk::Aes, Mk::Apka]
    } else {
        &[Mk::Aes]
    };
    for &mk in types {
        let name = mk.name();
        if !answers {
            for reg in ["NEW", "CUR", "OLD"] {
                text.push_str(&format!("{name} {reg}: - -\n"));
            }
            continue;
        }
        let regs = domain.registers.get(&mk).cloned().unwrap_or_default();
        let zeros = "0".repeat(mk.vp_hex_len());
        let (state, vp) = match &regs.new {
            NewRegister::Full(vp) => ("full", vp.as_str()),
            NewRegister::Partial => ("partial", zeros.as_str()),
            _ => ("empty", zeros.as_str()),
        };
        text.push_str(&format!("{name} NEW: {state} 0x{vp}\n"));
        for (reg, value) in [("CUR", &regs.current), ("OLD", &regs.old)] {
            match value {
                Some(vp) => text.push_str(&format!("{name} {reg}: valid 0x{vp}\n")),
                None => text.push_str(&format!("{name} {reg}: invalid 0x{zeros}\n")),
            }
        }
    }
    Some(text)
}

/// A key's own verification pattern (not an MKVP): 64 hex, as long as zkey's (an AES
/// encryption of 32 zero bytes), derived from its name.
pub fn own_pattern(name: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{index}:{name}").as_bytes());
    hex::encode(digest)
}

/// One secure key token carrying `mkvp` at the offsets zkey reads (S390 pkey.h). An EP11-AES
/// token has the 16-byte `ep11kblob_header` in front (336 bytes, version 0x06, wkvp at 48)
/// unless `ep11_header` is false: then it is `struct ep11keytoken` alone, its header laid over
/// the session field (320 bytes, version 0x03, wkvp at 32), as zkey wrote every EP11 key
/// before s390-tools 2.30.0 and writes one still when the kernel has no PKEY_TYPE_EP11_AES.
pub fn token(key_type: KeyType, mkvp: &str, seed: &str, ep11_header: bool) -> Vec<u8> {
    let filler = Sha256::digest(seed.as_bytes());
    let size = match key_type {
        KeyType::CcaAesData => 64,
        KeyType::CcaAesCipher => 136,
        KeyType::Ep11Aes if ep11_header => 336,
        KeyType::Ep11Aes => 320,
    };
    let mut bytes: Vec<u8> = (0..size).map(|i| filler[i % 32] ^ (i as u8)).collect();
    let vp = hex::decode(&mkvp[..key_type.mkvp_hex_len()]).expect("hex checked at parse");
    match key_type {
        KeyType::CcaAesData => {
            // Internal token (0x01), version 4; MKVP u64 at offset 8.
            bytes[0] = 0x01;
            bytes[1..4].fill(0);
            bytes[4] = 0x04;
            bytes[8..16].copy_from_slice(&vp);
        }
        KeyType::CcaAesCipher => {
            // Internal token, length, version 5; kvp at offset 10.
            bytes[0] = 0x01;
            bytes[1] = 0;
            bytes[2..4].copy_from_slice(&136u16.to_be_bytes());
            bytes[4] = 0x05;
            bytes[10..18].copy_from_slice(&vp);
        }
        KeyType::Ep11Aes => {
            // The header (non-CCA token 0x00, header version 0, length, version, clear key
            // bit length), then `struct ep11keytoken`: wkvp 32 bytes in, blob version 0x1234
            // 64 bytes in.
            let (version, blob) = if ep11_header { (0x06, 16) } else { (0x03, 0) };
            bytes[0] = 0x00;
            bytes[1] = 0;
            bytes[2..4].copy_from_slice(&(size as u16).to_be_bytes());
            bytes[4] = version;
            bytes[5] = 0;
            bytes[6..8].copy_from_slice(&256u16.to_be_bytes());
            bytes[blob + 32..blob + 48].copy_from_slice(&vp);
            bytes[blob + 64..blob + 66].copy_from_slice(&0x1234u16.to_be_bytes());
        }
    }
    bytes
}

/// A key's `.skey` or `.renc`: one token, or two back to back for XTS.
pub fn token_file(key: &ZkeyKey, mkvp: &str, which: &str) -> Vec<u8> {
    let mut bytes = token(
        key.key_type,
        mkvp,
        &format!("{}:{which}:1", key.name),
        key.ep11_header,
    );
    if key.xts {
        bytes.extend(token(
            key.key_type,
            mkvp,
            &format!("{}:{which}:2", key.name),
            key.ep11_header,
        ));
    }
    bytes
}

/// `.info` text: `name=value` lines, then `__hash__` = sha256 over every name and value in
/// order, concatenated (as zcrypt.md §4.1 describes s390-tools properties.c).
pub fn info(key: &ZkeyKey) -> String {
    let volumes = key
        .volume
        .as_ref()
        .map(|v| format!("{}:{}", v.device, v.dm_name))
        .unwrap_or_default();
    let volume_type = match &key.volume {
        Some(v) if !v.luks2 => "plain",
        _ => "luks2",
    };
    let mut properties = vec![
        ("description", key.description.clone()),
        ("apqns", key.apqns.join(",")),
        ("volumes", volumes),
        ("key-type", key.key_type.name().to_string()),
        ("volume-type", volume_type.to_string()),
        ("verification-pattern", key.verification_pattern.clone()),
        ("creation-time", key.creation_time.clone()),
    ];
    if let Some(time) = &key.reencipher_time {
        properties.push(("reencipher-time", time.clone()));
    }
    let mut hash = Sha256::new();
    let mut text = String::new();
    for (name, value) in &properties {
        hash.update(name.as_bytes());
        hash.update(value.as_bytes());
        text.push_str(&format!("{name}={value}\n"));
    }
    text.push_str(&format!("__hash__={}\n", hex::encode(hash.finalize())));
    text
}

fn render_zkey(repository: &Path, world: &World) -> Result<(), String> {
    mkdir(repository)?;
    for key in &world.keys {
        let file = |extension: &str| repository.join(format!("{}.{extension}", key.name));
        write_if_changed(&file("skey"), &token_file(key, &key.skey, "skey"))?;
        write_if_changed(&file("info"), info(key).as_bytes())?;
        let renc = file("renc");
        match &key.renc {
            Some(mkvp) => write_if_changed(&renc, &token_file(key, mkvp, "renc"))?,
            None => {
                if renc.exists() {
                    std::fs::remove_file(&renc).map_err(|e| {
                        format!("{}: cannot remove it: {e}", crate::quote::path(&renc))
                    })?;
                }
            }
        }
    }
    Ok(())
}
