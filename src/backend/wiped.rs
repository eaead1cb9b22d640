//! Request bodies and headers that carry a secret (key parts, an API key, a bearer token), in
//! buffers that are wiped when the HTTP client lets go of them.
//!
//! Each is written once into a zeroizing buffer allocated at its final size, so that no growth
//! leaves a copy in freed memory; hex and percent encoding go straight into it. It reaches
//! reqwest as `Bytes` whose owner is that buffer (`Bytes::from_owner`, bytes ≥ 1.9): reqwest
//! and hyper share it without copying, and whichever drops it last wipes it. A plain
//! `Body::from(Vec<u8>)` (or `.to_vec()`, `format!`, `serde_json::to_string`) would hand them
//! a copy that is freed, unwiped, after the send.
//!
//! Out of reach: copies the HTTP stack makes on the way out (hyper writes headers into its own
//! buffer; rustls seals a copy in place, leaving only ciphertext there), the kernel's socket
//! buffers, and stack slots of the code that fills a buffer.

use bytes::Bytes;
use zeroize::{Zeroize, Zeroizing};

use crate::keypart::{KEY_LEN, Secret32};

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes for reqwest (a body, a header value) that wipe `secret` when the last handle drops.
pub fn wiped<Z>(secret: Zeroizing<Z>) -> Bytes
where
    Z: Zeroize + AsRef<[u8]> + Send + 'static,
{
    Bytes::from_owner(secret)
}

/// `{"key_parts":["<hex>",…]}`: the body of a load, key parts in lower-case hex.
pub fn key_parts_body(parts: &[Secret32]) -> Zeroizing<String> {
    const OPEN: &str = "{\"key_parts\":[";
    const CLOSE: &str = "]}";
    let quoted = 2 * KEY_LEN + 2;
    let size = OPEN.len() + parts.len() * quoted + parts.len().saturating_sub(1) + CLOSE.len();
    let mut body = Zeroizing::new(String::with_capacity(size));
    let capacity = body.capacity();
    body.push_str(OPEN);
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push('"');
        for byte in part.expose() {
            body.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
            body.push(char::from(HEX_LOWER[usize::from(byte & 0x0f)]));
        }
        body.push('"');
    }
    body.push_str(CLOSE);
    assert_eq!(
        body.capacity(),
        capacity,
        "the load body grew, leaving a copy"
    );
    body
}

/// The form that exchanges an API key for a token at IAM, the key percent-encoded.
pub fn iam_form(api_key: &str) -> Zeroizing<String> {
    const GRANT: &str = "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=";
    let mut form = Zeroizing::new(String::with_capacity(GRANT.len() + 3 * api_key.len()));
    let capacity = form.capacity();
    form.push_str(GRANT);
    for byte in api_key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            form.push(char::from(byte));
        } else {
            form.push('%');
            form.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            form.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
        }
    }
    assert_eq!(
        form.capacity(),
        capacity,
        "the IAM form grew, leaving a copy"
    );
    form
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A secret that records when it is wiped.
    struct Probe {
        bytes: Vec<u8>,
        wiped: Arc<AtomicBool>,
    }

    impl Zeroize for Probe {
        fn zeroize(&mut self) {
            self.bytes.zeroize();
            self.wiped.store(true, Ordering::SeqCst);
        }
    }

    impl AsRef<[u8]> for Probe {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }

    #[test]
    fn a_body_is_the_secret_buffer_itself_and_is_wiped_when_the_client_lets_go() {
        let flag = Arc::new(AtomicBool::new(false));
        let secret = Zeroizing::new(Probe {
            bytes: b"key part".to_vec(),
            wiped: flag.clone(),
        });
        let address = secret.bytes.as_ptr();
        let bytes = wiped(secret);
        let body = reqwest::Body::from(bytes.clone());
        assert_eq!(
            body.as_bytes().map(<[u8]>::as_ptr),
            Some(address),
            "reqwest holds a copy, which nothing wipes"
        );
        drop(bytes);
        assert!(
            !flag.load(Ordering::SeqCst),
            "wiped while the body holds it"
        );
        drop(body);
        assert!(
            flag.load(Ordering::SeqCst),
            "not wiped when the body dropped"
        );
    }

    #[test]
    fn the_load_body_is_built_in_place_at_its_final_size() {
        for count in [2usize, 3] {
            let parts: Vec<Secret32> = (1..=count)
                .map(|n| Secret32::from_bytes([0xa0 + n as u8; KEY_LEN]))
                .collect();
            let body = key_parts_body(&parts);
            assert_eq!(body.len(), body.capacity());
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            let listed: Vec<String> = value["key_parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            let expected: Vec<String> = parts.iter().map(|p| hex::encode(p.expose())).collect();
            assert_eq!(listed, expected);
        }
    }

    #[test]
    fn the_iam_form_percent_encodes_the_api_key() {
        let form = iam_form("a b/c~Z_9+é");
        assert!(
            form.ends_with("&apikey=a%20b%2Fc~Z_9%2B%C3%A9"),
            "{}",
            form.as_str()
        );
    }
}
