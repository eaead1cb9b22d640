//! Who signs an administrator's part of a signed admin command (shared/tke-wire.md §4.3, §6):
//! a TKE CLI signature key file (P-521 or RSA-2048, opened with its password) or the signing
//! service the TKE CLI supports (`TKE_SIGNSERV_URL`, P-521 only). The command builder only
//! sees this trait: it asks for the key identifier the card knows, the algorithm, and a
//! signature over the exact DER bytes of the xcpAdminBlk.

use std::future::Future;
use std::pin::Pin;

/// The signature algorithms a crypto unit accepts from an administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// ECDSA over SHA-512 on P-521; the signature is DER `SEQ{INTEGER r, INTEGER s}`.
    P521,
    /// The raw RSA private operation on the X9.31 block around SHA-256; the signature is
    /// 256 bytes, left-padded.
    Rsa2048,
}

impl SignatureKind {
    /// The words the TKE CLI's key files use (`keyType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P521 => "p521ec",
            Self::Rsa2048 => "rsa2048",
        }
    }
}

/// Why a signature could not be made. The message names the administrator and the key's
/// source (file or service), never a password, a token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Nothing can be signed with this key as it is (wrong password, a key that does not
    /// match its identifier, a refusal by the signing service): stop and fix the key.
    #[error("{0}")]
    Refused(String),
    /// The signing service did not answer; nothing was sent to a crypto unit.
    #[error("{0}")]
    Unavailable(String),
}

pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, SignError>> + Send + 'a>>;

/// One administrator's signature key, ready to sign.
pub trait Signer: Send + Sync {
    /// The administrator's name, as the desired file gives it.
    fn administrator(&self) -> &str;
    /// Where the key comes from, for messages: "signature key file keys/alice.json" or
    /// "signing service key alice-p521". Never key material.
    fn source(&self) -> String;
    /// The key identifier the crypto unit knows the administrator by (SHA-256; §4.3).
    fn ski(&self) -> [u8; 32];
    fn kind(&self) -> SignatureKind;
    /// Signs `block_der`, the DER encoding of one xcpAdminBlk (tag and length included):
    /// the signature bytes of the SignerInfo (§4.3).
    fn sign<'a>(&'a self, block_der: &'a [u8]) -> SignFuture<'a>;
}
