//! The `opencryptoki:` tokens of a world file: each slot's type, APQNs, the master keys its
//! objects are under (its config's `EXPECTED_*` pins), the name of its config and its USER
//! PIN, checked against the world's cards.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::world::{Mk, Token, TokenKind, World};
use super::world_file::vp_at_least;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenYaml {
    pub(super) slot: u32,
    #[serde(rename = "type")]
    kind: TokenKind,
    apqns: Vec<String>,
    /// `EXPECTED_WKVP` (EP11) or `EXPECTED_MKVPS` (CCA): per MK type, the VP the token's
    /// objects are enciphered under and its config pins (EP11: WK; CCA: SYM, AES, APKA).
    expected: BTreeMap<String, String>,
    /// The name of its config in the world's `opencryptoki/` (`confname` in the world's
    /// `opencryptoki.conf`); default `ep11tok<SLOT>.conf` / `ccatok<SLOT>.conf`.
    #[serde(default)]
    confname: Option<String>,
    /// The token's USER PIN (a fake's, kept as its SHA-256 only).
    #[serde(default)]
    user_pin: Option<String>,
}

pub(super) fn token_of(world: &World, token: TokenYaml) -> Result<Token, String> {
    let what = format!("opencryptoki slot {}", token.slot);
    let mut apqns = Vec::new();
    for apqn in &token.apqns {
        let apqn = apqn.to_ascii_lowercase();
        let Some((card, _)) = world.find(&apqn) else {
            return Err(format!("{what}: no APQN \"{apqn}\" among the cards"));
        };
        let fits = match token.kind {
            TokenKind::Ep11 => card.is_ep11(),
            TokenKind::Cca => card.is_cca(),
        };
        if !fits {
            return Err(format!("{what}: {apqn} is on a {} card", card.kind));
        }
        apqns.push(apqn);
    }
    let mut objects = BTreeMap::new();
    for (name, vp) in token.expected {
        let mk = Mk::parse(&name).ok_or_else(|| format!("{what}: unknown MK type {name:?}"))?;
        if mk == Mk::Asym && token.kind == TokenKind::Cca {
            return Err(format!(
                "{what}: expected names ASYM, but openCryptoki's CCA token never uses the ASYM master key: it keeps RSA, EC and QSA private keys under APKA; write them under APKA"
            ));
        }
        if !token.kind.uses(mk) {
            return Err(format!(
                "{what}: a {:?} token has no {name} (EP11: WK; CCA: SYM, AES, APKA)",
                token.kind
            ));
        }
        let len = mk.compared_hex_len();
        objects.insert(mk, vp_at_least(&vp, len, &format!("{what} {name}"))?);
    }
    if objects.is_empty() {
        return Err(format!("{what}: expected names no MK"));
    }
    if let Some(name) = &token.confname
        && (name.is_empty()
            || name.contains('/')
            || name == "."
            || name == ".."
            || name == crate::backend::zcrypt::ock_conf::OPENCRYPTOKI_CONF)
    {
        return Err(format!(
            "{what}: confname {name:?} is not a plain file name for its config"
        ));
    }
    Ok(Token {
        slot: token.slot,
        confname: token.confname,
        kind: token.kind,
        apqns,
        objects,
        staged: BTreeMap::new(),
        user_pin_sha256: token.user_pin.map(|pin| super::ock_login::pin_sha256(&pin)),
    })
}
