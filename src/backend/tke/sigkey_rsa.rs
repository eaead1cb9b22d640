//! RSA-2048 signature keys (tke-wire.md §4.3, §6.1): PLACEHOLDER, replaced at merge by the
//! implementation made in parallel. This build signs with P-521 keys only.

use super::signer::{SignError, Signer};

/// An RSA-2048 administrator key from a decrypted signature key file.
pub fn signer(
    administrator: &str,
    source: String,
    _pkcs1_der: zeroize::Zeroizing<Vec<u8>>,
    _ski: [u8; 32],
) -> Result<Box<dyn Signer>, SignError> {
    Err(SignError::Refused(format!(
        "administrator {administrator}: {source} holds an RSA-2048 key, and RSA signature keys are not available in this build: use a P-521 signature key (keyType p521ec)"
    )))
}

/// Checks an RSA administrator's X9.31 signature (for the simulated card).
pub fn verify_x931(_public_key_der: &[u8], _block_der: &[u8], _signature: &[u8]) -> bool {
    false
}
