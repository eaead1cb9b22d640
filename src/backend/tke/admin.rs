//! Signed admin commands (tke-wire.md §4): the xcpAdminBlk a command is, the SignerInfo each
//! administrator's signature travels in, and the xcpAdminReq around them, built byte for byte
//! as the SDK's `CreateSignedHTPRequest` does; and the same read back, for the simulated card.
//! The signed data is exactly the block's DER (tag and length included), and the block
//! carries the transaction counter: a signature is good for one counter value only.

use p521::ecdsa::signature::hazmat::PrehashVerifier;
use p521::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

use super::WireError;
use super::der::{self, OCTET_STRING, SEQUENCE};
use super::ep11::M_ADMIN;
use super::signer::{SignError, SignatureKind, Signer};

/// Command ids (§4.1).
pub const GEN_IMPORTER: u32 = 0x09;
pub const IMPORT_WK: u32 = 0x0C;
pub const COMMIT_WK: u32 = 0x0D;
pub const FINALIZE_WK: u32 = 0x0E;
pub const CLEAR_NEXT_WK: u32 = 0x1C;
/// GEN_IMPORTER's input: a P-521 importer key.
pub const IMPORTER_P521: u32 = 3;
/// Bytes of the transaction counter (EP11h XCP_ADMCTR_BYTES).
pub const COUNTER_LEN: usize = 16;

pub const OID_SHA256: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
pub const OID_SHA512: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
pub const OID_ECDSA_WITH_SHA512: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
pub const OID_RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// Bytes of one coordinate of a P-521 point, and of a P-521 signature's r and s.
pub const P521_COORDINATE_LEN: usize = 66;

/// What a signed command is addressed with, from the domain attributes' verified reply
/// (§3.2, §4.2 step 2): the admin domain (domain ‖ instance id), the module id and the
/// counter the card holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub admin_domain: Vec<u8>,
    pub module_id: Vec<u8>,
    pub counter: Vec<u8>,
}

impl Address {
    /// The counter a command must carry: the one read + 1, same width, wrapping to zero.
    pub fn next_counter(&self) -> Vec<u8> {
        let mut next = self.counter.clone();
        for byte in next.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        next
    }
}

/// The xcpAdminBlk of a command with the next counter: the bytes every signature covers.
pub fn block(command: u32, address: &Address, input: &[u8]) -> Vec<u8> {
    block_with_counter(command, address, &address.next_counter(), input)
}

pub fn block_with_counter(
    command: u32,
    address: &Address,
    counter: &[u8],
    input: &[u8],
) -> Vec<u8> {
    der::sequence(&[
        der::octet_string(&command.to_be_bytes()),
        der::octet_string(&address.admin_domain),
        der::octet_string(&address.module_id),
        der::octet_string(counter),
        der::octet_string(input),
    ])
}

/// One SignerInfo (§4.3): version 3, the SKI under the primitive context tag `80`, the
/// digest and signature algorithms (each with a NULL parameter), the signature.
pub fn signer_info(ski: &[u8; 32], kind: SignatureKind, signature: &[u8]) -> Vec<u8> {
    let algorithm = |oid: &[u8]| der::sequence(&[der::element(0x06, oid), der::element(0x05, &[])]);
    let (digest, signature_algorithm): (&[u8], &[u8]) = match kind {
        SignatureKind::P521 => (&OID_SHA512, &OID_ECDSA_WITH_SHA512),
        SignatureKind::Rsa2048 => (&OID_SHA256, &OID_RSA_ENCRYPTION),
    };
    der::sequence(&[
        der::element(0x02, &[3]),
        der::element(0x80, ski),
        algorithm(digest),
        algorithm(signature_algorithm),
        der::octet_string(signature),
    ])
}

/// The xcpAdminReq: `SEQ{OS(m_admin), OS(domain), OS(block DER), OS(SignerInfos)}`; the
/// domain is the first 4 bytes of the admin domain (§4.2 step 5).
pub fn request(domain: u32, block: &[u8], signer_infos: &[u8]) -> Vec<u8> {
    der::sequence(&[
        der::octet_string(&M_ADMIN.to_be_bytes()),
        der::octet_string(&domain.to_be_bytes()),
        der::octet_string(block),
        der::octet_string(signer_infos),
    ])
}

/// Asks each signer for its signature over `block` and concatenates the SignerInfos (no
/// outer wrapper, §4.2 step 4).
pub async fn sign_all(block: &[u8], signers: &[&dyn Signer]) -> Result<Vec<u8>, SignError> {
    let mut out = Vec::new();
    for signer in signers {
        let signature = signer.sign(block).await?;
        out.extend(signer_info(&signer.ski(), signer.kind(), &signature));
    }
    Ok(out)
}

/// A signed command whose single block is signed by `signers`.
pub async fn signed_request(
    domain: u32,
    block: &[u8],
    signers: &[&dyn Signer],
) -> Result<Vec<u8>, SignError> {
    Ok(request(domain, block, &sign_all(block, signers).await?))
}

/// IMPORT_WK (§4.4): one signed inner request per key part (block with that part's
/// RecipientInfo), concatenated into the input of an outer block that carries no signature.
pub async fn import_request(
    domain: u32,
    address: &Address,
    recipient_infos: &[Vec<u8>],
    signers: &[&dyn Signer],
) -> Result<Vec<u8>, SignError> {
    let mut inner = Vec::new();
    for recipient_info in recipient_infos {
        let part = block(IMPORT_WK, address, recipient_info);
        inner.extend(signed_request(domain, &part, signers).await?);
    }
    Ok(request(domain, &block(IMPORT_WK, address, &inner), &[]))
}

/// A P-521 signature as the card wants it: DER `SEQ{INTEGER r, INTEGER s}`.
pub fn p521_signature_der(signature: &Signature) -> Vec<u8> {
    let bytes = signature.to_bytes();
    let integer = |n: &[u8]| {
        let n = &n[n.iter().take_while(|b| **b == 0).count()..];
        let bytes = if n.first().is_none_or(|b| b & 0x80 != 0) {
            [&[0u8][..], n].concat()
        } else {
            n.to_vec()
        };
        der::element(0x02, &bytes)
    };
    der::sequence(&[
        integer(&bytes[..P521_COORDINATE_LEN]),
        integer(&bytes[P521_COORDINATE_LEN..]),
    ])
}

/// Reads DER `SEQ{INTEGER r, INTEGER s}` back into a P-521 signature.
pub fn p521_signature_from_der(bytes: &[u8]) -> Result<Signature, WireError> {
    let sequence = der::read_whole(bytes, SEQUENCE, "an ECDSA signature")?;
    let parts = der::elements(sequence.value)?;
    let [r, s] = parts[..] else {
        return Err(WireError::new("an ECDSA signature is not two INTEGERs"));
    };
    let mut fixed = [0u8; 2 * P521_COORDINATE_LEN];
    for (i, n) in [r, s].iter().enumerate() {
        let value = &n.value[n.value.iter().take_while(|b| **b == 0).count()..];
        if n.tag != 0x02 || value.len() > P521_COORDINATE_LEN {
            return Err(WireError::new("an ECDSA signature's r or s is malformed"));
        }
        let end = (i + 1) * P521_COORDINATE_LEN;
        fixed[end - value.len()..end].copy_from_slice(value);
    }
    Signature::from_slice(&fixed).map_err(|_| WireError::new("an ECDSA signature is out of range"))
}

/// Checks a P-521 administrator's signature over `block` (SHA-512, §4.3).
pub fn verify_p521(public_key: &[u8], block: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_sec1_bytes(public_key) else {
        return false;
    };
    let Ok(signature) = p521_signature_from_der(signature) else {
        return false;
    };
    key.verify_prehash(&Sha512::digest(block), &signature)
        .is_ok()
}

// ---------------------------------------------------------------------------------------------
// The card's side, for the simulator

/// One SignerInfo as the card reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerInfo {
    pub ski: Vec<u8>,
    pub kind: Option<SignatureKind>,
    pub signature: Vec<u8>,
}

/// A signed m_admin request as the card reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    pub command: u32,
    pub admin_domain: Vec<u8>,
    pub module_id: Vec<u8>,
    pub counter: Vec<u8>,
    pub input: Vec<u8>,
    /// The block's DER as carried: what the signatures cover.
    pub block: Vec<u8>,
    pub signer_infos: Vec<SignerInfo>,
}

pub fn parse_signed_request(payload: &[u8]) -> Result<SignedRequest, WireError> {
    let fields = der::octet_strings(payload, "the m_admin request")?;
    let [_function, _domain, block, signers] = fields[..] else {
        return Err(WireError::new("the m_admin request does not have 4 fields"));
    };
    let parts = der::octet_strings(block, "the m_admin request block")?;
    let [command, admin_domain, module_id, counter, input] = parts[..] else {
        return Err(WireError::new(
            "the m_admin request block does not have 5 fields",
        ));
    };
    let command = <[u8; 4]>::try_from(command)
        .map(u32::from_be_bytes)
        .map_err(|_| WireError::new("the command id is not 4 bytes"))?;
    Ok(SignedRequest {
        command,
        admin_domain: admin_domain.to_vec(),
        module_id: module_id.to_vec(),
        counter: counter.to_vec(),
        input: input.to_vec(),
        block: block.to_vec(),
        signer_infos: parse_signer_infos(signers)?,
    })
}

/// Concatenated SignerInfos (§4.3).
pub fn parse_signer_infos(bytes: &[u8]) -> Result<Vec<SignerInfo>, WireError> {
    let mut out = Vec::new();
    for info in der::elements(bytes)? {
        let fields = der::elements(info.value)?;
        let [version, ski, digest, algorithm, signature] = fields[..] else {
            return Err(WireError::new("a SignerInfo does not have 5 fields"));
        };
        if info.tag != SEQUENCE || version.value != [3] || ski.tag != 0x80 {
            return Err(WireError::new("a SignerInfo is malformed"));
        }
        let oid = |algorithm: der::Tlv<'_>| -> Result<Vec<u8>, WireError> {
            let inner = der::elements(algorithm.value)?;
            Ok(inner.first().map(|o| o.value.to_vec()).unwrap_or_default())
        };
        let kind = match (oid(digest)?.as_slice(), oid(algorithm)?.as_slice()) {
            (d, a) if d == OID_SHA512 && a == OID_ECDSA_WITH_SHA512 => Some(SignatureKind::P521),
            (d, a) if d == OID_SHA256 && a == OID_RSA_ENCRYPTION => Some(SignatureKind::Rsa2048),
            _ => None,
        };
        if signature.tag != OCTET_STRING {
            return Err(WireError::new(
                "a SignerInfo's signature is not an OCTET STRING",
            ));
        }
        out.push(SignerInfo {
            ski: ski.value.to_vec(),
            kind,
            signature: signature.value.to_vec(),
        });
    }
    Ok(out)
}

/// The inner signed requests of an IMPORT_WK's outer block (§4.4).
pub fn parse_import_parts(input: &[u8]) -> Result<Vec<SignedRequest>, WireError> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (tlv, after) = der::read(rest)?;
        let whole = &rest[..rest.len() - after.len()];
        if tlv.tag != SEQUENCE {
            return Err(WireError::new("an IMPORT_WK part is not a SEQUENCE"));
        }
        out.push(parse_signed_request(whole)?);
        rest = after;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
