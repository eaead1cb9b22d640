//! The fake `cryptsetup`, for the one command mkplan runs: `luksDump` of a LUKS2 volume that
//! the fake `zkey-cryptsetup` keeps (cryptsetup.c `action_luksDump`).
//!
//! - `luksDump DEVICE --dump-json-metadata`: the header's key slots and tokens as JSON. Key
//!   slot 0 is the active one; a staged copy is key slot 1, unbound, named by a
//!   `paes-reencipher` token as zkey-cryptsetup writes it (`put_reencipher_token`); older
//!   copies left unbound follow.
//! - `luksDump DEVICE --unbound --key-slot N --key-file F [--batch-mode]`: the key of unbound
//!   key slot N in hex after `Unbound Key:` (`luksDump_with_unbound_key`), once the
//!   passphrase in F opens it. Without `--batch-mode` the tool asks first, and stdin is no
//!   terminal here: it fails.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::render::{own_pattern, token_file};
use super::world::Luks2Header;
use super::{Output, Session, parse_args};

const TOOL: &str = "cryptsetup";

#[derive(Parser)]
#[command(
    name = "cryptsetup",
    about = "Fake cryptsetup (mkplan's zcrypt simulator)"
)]
struct Cryptsetup {
    /// Only `luksDump`.
    action: String,
    device: String,
    #[arg(long)]
    dump_json_metadata: bool,
    #[arg(long)]
    unbound: bool,
    #[arg(short = 'S', long)]
    key_slot: Option<u32>,
    #[arg(short = 'd', long)]
    key_file: Option<PathBuf>,
    #[arg(short = 'q', long)]
    batch_mode: bool,
}

pub fn run(dir: &Path, args: &[String]) -> Output {
    let parsed: Cryptsetup = match parse_args(TOOL, args) {
        Ok(parsed) => parsed,
        Err(output) => return output,
    };
    if parsed.action != "luksDump" {
        return Output::failure(
            TOOL,
            format!(
                "the fake cryptsetup knows only luksDump, not {}",
                parsed.action
            ),
        );
    }
    let session = match Session::open(dir, "cryptsetup luksDump") {
        Ok(session) => session,
        Err(message) => return Output::failure(TOOL, message),
    };
    let world = &session.world;
    let Some(header) = world.luks2.iter().find(|h| h.device == parsed.device) else {
        return Output::failure(
            TOOL,
            format!("Device {} is not a valid LUKS device.", parsed.device),
        );
    };
    let Some(key) = world.keys.iter().find(|k| k.name == header.key_name) else {
        return Output::failure(TOOL, format!("Device {}: no key", parsed.device));
    };
    let slots = unbound_slots(header);
    if parsed.dump_json_metadata {
        let mut output = Output::default();
        output.out(metadata(header, &slots, &key.name));
        return output;
    }
    if !parsed.unbound {
        return Output::failure(
            TOOL,
            "the fake cryptsetup prints only --dump-json-metadata or --unbound",
        );
    }
    let Some(slot) = parsed.key_slot else {
        return Output::failure(TOOL, "Option --unbound requires --key-slot.");
    };
    let Some(mk) = slots.get(&slot) else {
        return Output::failure(
            TOOL,
            format!("Keyslot {slot} does not contain unbound key."),
        );
    };
    if !parsed.batch_mode {
        return Output::failure(TOOL, "Operation aborted.");
    }
    let opens = parsed
        .key_file
        .as_deref()
        .map(super::cryptsetup::passphrase_sha256)
        .transpose();
    match opens {
        Ok(Some(sha)) if sha == header.passphrase_sha256 => {}
        Ok(_) => return Output::failure(TOOL, "No key available with this passphrase."),
        Err(why) => return Output::failure(TOOL, why),
    }
    let bytes = token_file(key, mk, &format!("luks2:{slot}"));
    let mut output = Output::default();
    output.out(format!("LUKS header information for {}", header.device));
    output.out(format!("UUID:    \t{}", uuid(&header.device)));
    output.out(format!("Keyslot: \t{slot}"));
    output.out(format!("Key bits:\t{}", bytes.len() * 8));
    let lines: Vec<String> = bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    output.out(format!("Unbound Key:\t{}", lines.join("\n\t\t")));
    output
}

/// The unbound key slots and the master key each copy is under: the staged one (1), then
/// the older ones.
fn unbound_slots(header: &Luks2Header) -> std::collections::BTreeMap<u32, &str> {
    header
        .staged
        .iter()
        .map(|mk| (1, mk.as_str()))
        .chain(
            header
                .unbound
                .iter()
                .enumerate()
                .map(|(i, mk)| (i as u32 + 2, mk.as_str())),
        )
        .collect()
}

fn uuid(device: &str) -> String {
    let hex = own_pattern(device, 0);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The header's JSON metadata: key slots, the segment, digests, and zkey-cryptsetup's tokens.
fn metadata(
    header: &Luks2Header,
    unbound: &std::collections::BTreeMap<u32, &str>,
    key_name: &str,
) -> String {
    let mut keyslots = serde_json::Map::new();
    keyslots.insert(
        "0".into(),
        serde_json::json!({"type": "luks2", "key_size": 64}),
    );
    for slot in unbound.keys() {
        keyslots.insert(
            slot.to_string(),
            serde_json::json!({"type": "luks2", "key_size": 64}),
        );
    }
    let unbound_names: Vec<String> = unbound.keys().map(ToString::to_string).collect();
    let mut tokens = serde_json::Map::new();
    tokens.insert(
        "0".into(),
        serde_json::json!({
            "type": "paes-verification-pattern",
            "keyslots": [],
            "verification-pattern": own_pattern(key_name, 0),
        }),
    );
    if header.staged.is_some() {
        tokens.insert(
            "1".into(),
            serde_json::json!({
                "type": "paes-reencipher",
                "keyslots": ["1"],
                "verification-pattern": own_pattern(key_name, 0),
                "original-keyslot": 0,
                "unbound-keyslot": 1,
            }),
        );
    }
    let document = serde_json::json!({
        "keyslots": keyslots,
        "tokens": tokens,
        "segments": {"0": {"type": "crypt", "offset": "16777216", "size": "dynamic",
                            "encryption": "paes-xts-plain64", "sector_size": 4096}},
        "digests": {
            "0": {"type": "pbkdf2", "keyslots": ["0"], "segments": ["0"]},
            "1": {"type": "pbkdf2", "keyslots": unbound_names, "segments": []},
        },
        "config": {"json_size": "12288", "keyslots_size": "16744448"},
    });
    serde_json::to_string_pretty(&document).expect("JSON of strings and numbers")
}
