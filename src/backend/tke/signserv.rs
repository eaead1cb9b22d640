//! The TKE signing service (`TKE_SIGNSERV_URL`, tke-wire.md §6.2): PLACEHOLDER, replaced at
//! merge by the implementation made in parallel.

use super::signer::{SignError, Signer};

/// A signer backed by key `key_name` of the signing service at `url`.
pub async fn signer(
    url: &str,
    administrator: &str,
    key_name: &str,
    _token: Option<zeroize::Zeroizing<String>>,
) -> Result<Box<dyn Signer>, SignError> {
    Err(SignError::Unavailable(format!(
        "administrator {administrator}: signing service key {key_name} at {url}: the signing service is not available in this build: use a signature key file"
    )))
}
