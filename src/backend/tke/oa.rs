//! Outbound authentication (OA): how a reply is known to come from an IBM crypto module
//! (tke-wire.md §4.6). A module signs its m_admin replies with its current epoch key; the
//! device certificate at index 0 carries that key, each certificate is signed by the next
//! one's key, and the last by one of IBM's three P-521 root keys. Everything here fails
//! closed: a certificate or signature that cannot be checked is an error, never data.
//!
//! Facts from IBM's Go TKE SDK v1.0.3 (no code copied): the layouts from
//! `ep11cmds/oa2CertificateX.go` (CEX6/CEX7) and `ep11cmds/oa3CertificateX.go` (CEX8), the
//! chain rules and the root keys from `ep11cmds/verifyOA2Certificate.go` and
//! `ep11cmds/verifyOA3Certificate.go`, how a reply's signature is found from
//! `ep11cmds/signerInfo.go` (`GetECCSignerInfo`), and what it covers from
//! `ep11cmds/ep11cprb.go` (`buildAdminRspBlk`). The older CEX5 layout is refused.
//!
//! The backend (`tke::TkeBackend::admin`) reads each crypto module's chain once per run,
//! checks every m_admin reply with its epoch key, and re-reads the chain once after a reply
//! fails before it refuses. A chain whose exact bytes verified against the same roots before
//! in this process is not checked again (`verify_chain_once`); the replies always are. The
//! test chain the simulator signs with is `oa_test_chain`.

use p521::ecdsa::signature::hazmat::PrehashVerifier;
use p521::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

use super::WireError;
use super::der;

/// Lengths of the two CEX8 (OA3) certificate forms; the SDK tells them by length alone.
pub const OA3_LEN: usize = 7973;
pub const OA3_MB_LEN: usize = 7810;
/// First byte of a CEX6/CEX7 (OA2) certificate.
const OA2_MAGIC: u8 = 0x45;
/// Certificates one chain may hold, the epoch certificate included (the SDK has no limit).
pub const CHAIN_LEN_MAX: usize = 8;
/// ecdsa-with-SHA512, the only reply signature mkplan can check (the CEX8 may add a
/// Dilithium one, which the SDK does not check either).
const OID_ECDSA_WITH_SHA512: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
/// Bytes of a P-521 coordinate, of a scalar, and of an SKI.
const COORDINATE_LEN: usize = 66;
const SKI_LEN: usize = 32;

/// The two certificate families: a chain stays within one, and so does its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// CEX6/CEX7 (4768/4769).
    Oa2,
    /// CEX8 (4770), in its full (7973 bytes) or MB (7810 bytes) form.
    Oa3,
}

/// One OA certificate, reduced to what the chain and the replies need.
#[derive(Clone, Debug)]
pub struct OaCertificate {
    pub family: Family,
    pub subject_ski: [u8; SKI_LEN],
    pub signer_ski: [u8; SKI_LEN],
    /// The key this certificate vouches for: the module's epoch key for index 0.
    pub public_key: VerifyingKey,
    /// The bytes its signer signed (SHA-512, ECDSA P-521).
    signed_body: Vec<u8>,
    signature: Signature,
}

impl OaCertificate {
    pub fn parse(data: &[u8]) -> Result<Self, WireError> {
        if data.len() == OA3_LEN || data.len() == OA3_MB_LEN {
            return parse_oa3(data);
        }
        match data.first() {
            Some(&OA2_MAGIC) => parse_oa2(data),
            Some(_) => Err(WireError::new(format!(
                "the device certificate ({} bytes) is neither OA2 (CEX6/CEX7) nor OA3 (CEX8); older crypto modules (CEX5) are not supported",
                data.len()
            ))),
            None => Err(WireError::new("the device certificate is empty")),
        }
    }

    /// Checks that `signer` signed this certificate.
    pub fn verify_signed_by(&self, signer: &VerifyingKey) -> Result<(), WireError> {
        signer
            .verify_prehash(&Sha512::digest(&self.signed_body), &self.signature)
            .map_err(|_| WireError::new("its signature does not verify"))
    }
}

fn cut<'a>(
    data: &'a [u8],
    range: std::ops::Range<usize>,
    what: &str,
) -> Result<&'a [u8], WireError> {
    data.get(range.clone()).ok_or_else(|| {
        WireError::new(format!(
            "the device certificate is cut short: {what} needs bytes {}..{}, it has {}",
            range.start,
            range.end,
            data.len()
        ))
    })
}

fn ski(bytes: &[u8]) -> [u8; SKI_LEN] {
    bytes.try_into().expect("cut to 32 bytes")
}

/// `04 ‖ X ‖ Y`, as a P-521 key.
fn public_key(bytes: &[u8]) -> Result<VerifyingKey, WireError> {
    if bytes.first() != Some(&0x04) {
        return Err(WireError::new(
            "the certificate's public key is not an uncompressed P-521 point",
        ));
    }
    VerifyingKey::from_sec1_bytes(bytes)
        .map_err(|_| WireError::new("the certificate's public key is not a P-521 point"))
}

/// r and s, each at most 66 significant bytes (leading zeros allowed), as a signature.
fn signature(r: &[u8], s: &[u8]) -> Result<Signature, WireError> {
    let fixed = |n: &[u8]| {
        let n = &n[n.iter().take_while(|b| **b == 0).count()..];
        (n.len() <= COORDINATE_LEN).then(|| {
            let mut out = [0u8; COORDINATE_LEN];
            out[COORDINATE_LEN - n.len()..].copy_from_slice(n);
            out
        })
    };
    let (Some(r), Some(s)) = (fixed(r), fixed(s)) else {
        return Err(WireError::new("a signature value is longer than 66 bytes"));
    };
    Signature::from_slice(&[r, s].concat())
        .map_err(|_| WireError::new("a signature value is zero or out of range"))
}

/// OA2: a 32-byte header whose u32s at 8, 12, 16, 20 and 24 give five section lengths;
/// each present section is followed by 4, 3, 5, 2 and 1 pad bytes. The signer signed
/// everything before the last section (its SignerInfo).
fn parse_oa2(data: &[u8]) -> Result<OaCertificate, WireError> {
    const PADS: [usize; 5] = [4, 3, 5, 2, 1];
    let header = cut(data, 0..32, "the header")?;
    let mut sections = Vec::with_capacity(5);
    let mut at = 32usize;
    for (i, pad) in PADS.iter().enumerate() {
        let length = u32::from_be_bytes(header[8 + 4 * i..12 + 4 * i].try_into().expect("4"));
        let size = match usize::try_from(length) {
            Ok(0) => 0,
            Ok(n) if n <= data.len() => n + pad,
            _ => data.len() + 1,
        };
        let end = at + size;
        sections.push(at..end);
        at = end;
    }
    let metadata = cut(data, sections[1].clone(), "the metadata section")?;
    let spki = cut(data, sections[3].clone(), "the public key section")?;
    let signer_info = cut(data, sections[4].clone(), "the signer info section")?;
    let r = cut(signer_info, 73..139, "the signature's r")?;
    let s = cut(signer_info, 141..207, "the signature's s")?;
    Ok(OaCertificate {
        family: Family::Oa2,
        subject_ski: ski(cut(metadata, 87..119, "the subject SKI")?),
        signer_ski: ski(cut(metadata, 121..153, "the signer SKI")?),
        public_key: public_key(cut(spki, 25..158, "the public key")?)?,
        signed_body: data[..sections[4].start].to_vec(),
        signature: signature(r, s)?,
    })
}

/// OA3: fixed offsets, by form (tke-wire.md §4.6). The signer signed bytes 4..182 and the
/// ECC key's info and value after them.
fn parse_oa3(data: &[u8]) -> Result<OaCertificate, WireError> {
    let (subject, key, r, s) = if data.len() == OA3_MB_LEN {
        (264..296, 323..456, 476..542, 544..610)
    } else {
        (266..298, 405..538, 558..624, 626..692)
    };
    let body = [&data[4..182], &data[236..key.end]].concat();
    Ok(OaCertificate {
        family: Family::Oa3,
        subject_ski: ski(&data[subject]),
        signer_ski: ski(&data[191..223]),
        public_key: public_key(&data[key])?,
        signed_body: body,
        signature: signature(&data[r], &data[s])?,
    })
}

/// A root key that may sign the last certificate of a chain, chosen by its SKI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootKey {
    pub name: &'static str,
    pub family: Family,
    /// Hex, lower case.
    pub ski: &'static str,
    pub x: &'static str,
    pub y: &'static str,
}

impl RootKey {
    fn key(&self) -> VerifyingKey {
        let point = format!("04{}{}", self.x, self.y);
        public_key(&hex::decode(point).expect("hex constant"))
            .expect("a root key is a P-521 point (checked by a test)")
    }
}

/// IBM's public OA root keys, as IBM's Go TKE SDK v1.0.3 embeds them
/// (`ep11cmds/verifyOA2Certificate.go` for the CEX6 and CEX7 roots,
/// `ep11cmds/verifyOA3Certificate.go` for the CEX8 root).
pub const IBM_ROOTS: [RootKey; 3] = [
    RootKey {
        name: "IBM 4768 (CEX6) OA root",
        family: Family::Oa2,
        ski: "5f4717480b75b8bcbc224c62dfbd7a3b8987e54193d40a1a664fa221e5387123",
        x: "018bd55521ae1d52a07630d04cd1adeb82f22fea54da7ccf5d4e33e0c5ff075519f4d9d902a6800d47dc2c0e5fd4f6ebe63096f37fadf9717b8a679d0fb1d5957cdc",
        y: "0116f34a637240bf0abcef0528cb8eb4cdde17154010d10692c753fdadebcfb452130fa664bc8546c1bd72211297ad0038836a4e55182530d6ccb10ffa2004f7f9cd",
    },
    RootKey {
        name: "IBM 4769 (CEX7) OA root",
        family: Family::Oa2,
        ski: "b23884d4dea35eaabab109e0a6c400b2f5bea652f14ab23d2a47220696eb0e6b",
        x: "0112ec7b6c304f2ded0dcbc0d8ec3c43ee2fb377052a46517747bfe5ad35e68f50016644a438cc6c20c4d1b25085eea9c83a99514d9b39b6e3d60f472237ac894d81",
        y: "002b53cdf6a39ca67e258a0e714d6609d7ea3f687aa0b3bf8b69f92e7dcf539792abb8b063be8f9393124c10271d4c569626cb6e8ea79f502670c201848e328041a7",
    },
    RootKey {
        name: "IBM 4770 (CEX8) OA root",
        family: Family::Oa3,
        ski: "96c87ef655f67918b4f38c612ed9e492fe152555a63cd5fe2b719ee77b3277f6",
        x: "01b6de79e40847a31b10ed5e2458d70b5acb8f2e3c1a78875a99cdee110cdd27020174485b0e71deb3668e574181443eb3801d0d2060b90ce8f2c09bf0fb346c3657",
        y: "018f9caef6a395b32b03f3327993f55b96e0a3c5fab1dc640e033ceaede78b41d27400f611494f227c5695abd40d8facdbb30a0a4a63e62bb2867805e85768cbcd33",
    },
];

/// Checks a module's chain to IBM's roots and returns its epoch key (certificate 0's).
pub fn verify_chain_to_ibm(chain: &[Vec<u8>]) -> Result<VerifyingKey, WireError> {
    verify_chain(chain, &IBM_ROOTS)
}

/// Chains `verify_chain_once` remembers; past it the oldest is forgotten (and verified
/// again when it is read again).
const CHAINS_VERIFIED_MAX: usize = 32;

/// A chain that verified, exactly as read, with exactly the roots it was checked against.
struct VerifiedChain {
    chain: Vec<Vec<u8>>,
    roots: Vec<RootKey>,
    epoch_key: VerifyingKey,
}

/// Chains that verified in this process: every crypto module of a run, and every backend a
/// process opens, reads the same chain again, and each check costs several P-521
/// verifications. Only successes are kept, keyed by every byte of every certificate and by
/// the whole list of trusted roots, so a hit returns what `verify_chain` would return.
static CHAINS_VERIFIED: std::sync::Mutex<Vec<VerifiedChain>> = std::sync::Mutex::new(Vec::new());

/// `verify_chain`, remembering chains that verified: a chain whose bytes and roots are the
/// same as those of one that verified before in this process is not checked again. Anything
/// else (a changed byte, another certificate, another set of roots) is checked in full, and a
/// refusal is never remembered.
pub(crate) fn verify_chain_once(
    chain: &[Vec<u8>],
    roots: &[RootKey],
) -> Result<VerifyingKey, WireError> {
    let verified = || CHAINS_VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = verified()
        .iter()
        .find(|known| known.chain == chain && known.roots == roots)
    {
        return Ok(known.epoch_key);
    }
    let epoch_key = verify_chain(chain, roots)?;
    let mut verified = verified();
    if verified.len() >= CHAINS_VERIFIED_MAX {
        verified.remove(0);
    }
    verified.push(VerifiedChain {
        chain: chain.to_vec(),
        roots: roots.to_vec(),
        epoch_key,
    });
    Ok(epoch_key)
}

/// Whether `verify_chain_once` would answer from memory (for tests).
#[cfg(test)]
pub(crate) fn chain_remembered(chain: &[Vec<u8>], roots: &[RootKey]) -> bool {
    CHAINS_VERIFIED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|known| known.chain == chain && known.roots == roots)
}

/// `chain[0]` is device certificate 0 (the epoch key), `chain[i + 1]` the certificate that
/// signed `chain[i]`; the module answered "not found" (96/60) after the last, which must
/// be signed by one of `roots`. Only tests pass other roots than IBM's.
pub(crate) fn verify_chain(
    chain: &[Vec<u8>],
    roots: &[RootKey],
) -> Result<VerifyingKey, WireError> {
    if chain.is_empty() || chain.len() > CHAIN_LEN_MAX {
        return Err(WireError::new(format!(
            "the OA certificate chain has {} certificates, not 1 to {CHAIN_LEN_MAX}",
            chain.len()
        )));
    }
    let certificates = chain
        .iter()
        .enumerate()
        .map(|(i, data)| {
            OaCertificate::parse(data)
                .map_err(|e| WireError::new(format!("device certificate {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, certificate) in certificates.iter().enumerate() {
        let refuse = |why: String| WireError::new(format!("device certificate {i}: {why}"));
        if certificate.subject_ski == certificate.signer_ski {
            return Err(refuse(
                "it signs itself; self-signed OA certificates are refused".into(),
            ));
        }
        let signer = match certificates.get(i + 1) {
            Some(parent) => {
                if parent.family != certificate.family
                    || parent.subject_ski != certificate.signer_ski
                {
                    return Err(refuse(format!(
                        "it names signer SKI {}, but certificate {} is {} ({:?})",
                        hex::encode(certificate.signer_ski),
                        i + 1,
                        hex::encode(parent.subject_ski),
                        parent.family
                    )));
                }
                parent.public_key
            }
            None => {
                let signer = hex::encode(certificate.signer_ski);
                let root = roots
                    .iter()
                    .find(|root| root.ski == signer && root.family == certificate.family)
                    .ok_or_else(|| {
                        refuse(format!(
                            "the chain ends at signer SKI {signer}, which is none of the {:?} root keys mkplan trusts ({})",
                            certificate.family,
                            roots
                                .iter()
                                .filter(|r| r.family == certificate.family)
                                .map(|r| r.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                root.key()
            }
        };
        certificate
            .verify_signed_by(&signer)
            .map_err(|e| refuse(e.message))?;
    }
    Ok(certificates[0].public_key)
}

/// Checks the ECDSA P-521 OA signature on one m_admin reply. `signer_infos` is the
/// xcpAdminRsp's fifth field (one or two SignerInfo SEQUENCEs, the ECDSA one not
/// necessarily first), `block` the xcpAdminRspBlk DER exactly as the reply carried it.
pub fn verify_reply(
    signer_infos: &[u8],
    block: &[u8],
    epoch_key: &VerifyingKey,
) -> Result<(), WireError> {
    let mut rest = signer_infos;
    while !rest.is_empty() {
        let (signer_info, after) = der::read(rest)?;
        rest = after;
        if signer_info.tag != der::SEQUENCE {
            return Err(WireError::new(
                "the reply's SignerInfos hold something else than a SEQUENCE",
            ));
        }
        // version, SKI [0], digest algorithm, signature algorithm, signature.
        let fields = der::elements(signer_info.value)?;
        let [_, _, _, algorithm, value] = fields[..] else {
            return Err(WireError::new(format!(
                "a SignerInfo of the reply has {} fields, not 5",
                fields.len()
            )));
        };
        let algorithm = der::elements(algorithm.value)?;
        if algorithm.first().map(|oid| (oid.tag, oid.value))
            != Some((0x06, &OID_ECDSA_WITH_SHA512[..]))
        {
            continue;
        }
        if value.tag != der::OCTET_STRING {
            return Err(WireError::new(
                "the reply's ECDSA signature is not an OCTET STRING",
            ));
        }
        let pair = der::read_whole(value.value, der::SEQUENCE, "the reply's ECDSA signature")?;
        let [r, s] = der::elements(pair.value)?[..] else {
            return Err(WireError::new(
                "the reply's ECDSA signature is not SEQUENCE{r, s}",
            ));
        };
        if r.tag != 0x02 || s.tag != 0x02 {
            return Err(WireError::new(
                "the reply's ECDSA signature is not two INTEGERs",
            ));
        }
        return epoch_key
            .verify_prehash(&Sha512::digest(block), &signature(r.value, s.value)?)
            .map_err(|_| {
                WireError::new(
                    "the reply's OA signature does not verify with the crypto module's epoch key",
                )
            });
    }
    Err(WireError::new(
        "the reply carries no ECDSA P-521 OA signature (ecdsa-with-SHA512)",
    ))
}

#[cfg(test)]
#[path = "oa_tests.rs"]
mod tests;
