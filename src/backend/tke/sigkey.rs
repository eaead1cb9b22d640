//! The TKE CLI's password-protected signature key files (`ibmcloud tke sigkey-add`,
//! tke-wire.md §6.1): a JSON object of strings (`keyType`, `ski`, `seaSalt`, `enckey`). The
//! password and the salt give an AES-256 key (PBKDF2-HMAC-SHA256, 4096 rounds); `enckey` is
//! AES-256-GCM (12-byte nonce ‖ ciphertext ‖ tag) of a PEM block typed `PRIVATE KEY` holding a
//! SEC1 ECPrivateKey (P-521) or a PKCS#1 RSAPrivateKey (RSA-2048, module `sigkey_rsa`). The
//! SKI is recomputed from the key and must be the file's, before anything is signed.
//!
//! Also writes P-521 files in exactly that format, for tests and rehearsals against
//! `mkplan sim serve --protocol tke` (`mkplan sim sigkey new`).

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use p521::SecretKey;
use p521::ecdsa::signature::hazmat::PrehashSigner;
use p521::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use super::admin::p521_signature_der;
use super::der::{self, OCTET_STRING, SEQUENCE};
use super::kari::point;
use super::signer::{SignError, SignFuture, SignatureKind, Signer};

/// PBKDF2 rounds the TKE CLI uses.
pub const PBKDF2_ROUNDS: u32 = 4096;
pub const SALT_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
/// A signature key file is a few hundred bytes; anything much larger is not one.
pub const FILE_BYTES_MAX: u64 = 64 * 1024;
/// OID of secp521r1 (1.3.132.0.35).
const OID_SECP521R1: [u8; 5] = [0x2b, 0x81, 0x04, 0x00, 0x23];
const PEM_TYPE: &str = "PRIVATE KEY";

/// The SKI of a P-521 administrator key: SHA-256(`04 ‖ X ‖ Y`) (§4.3).
pub fn p521_ski(point: &[u8]) -> [u8; 32] {
    Sha256::digest(point).into()
}

/// Opens one administrator's signature key file with its password: decrypts it, recomputes
/// the SKI and requires it to be the file's. Errors name the administrator and the file.
pub fn open(
    administrator: &str,
    path: &Path,
    password: &[u8],
) -> Result<Box<dyn Signer>, SignError> {
    let source = format!("signature key file {}", path.display());
    let refused =
        |why: String| SignError::Refused(format!("administrator {administrator}: {source}: {why}"));
    let size = std::fs::metadata(path)
        .map_err(|e| refused(format!("cannot be read ({e})")))?
        .len();
    if size > FILE_BYTES_MAX {
        return Err(refused(format!(
            "is {size} bytes, not a signature key file (at most {FILE_BYTES_MAX})"
        )));
    }
    let text = std::fs::read(path).map_err(|e| refused(format!("cannot be read ({e})")))?;
    let fields: HashMap<String, String> = serde_json::from_slice(&text).map_err(|_| {
        refused("is not a TKE signature key file (a JSON object of strings with keyType, ski, seaSalt and enckey)".into())
    })?;
    let field = |name: &str| {
        fields.get(name).ok_or_else(|| {
            refused(format!(
                "has no `{name}`; it is not a TKE signature key file"
            ))
        })
    };
    let ski = hex::decode(field("ski")?)
        .ok()
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| refused("its `ski` is not 64 hex digits".into()))?;
    let salt =
        hex::decode(field("seaSalt")?).map_err(|_| refused("its `seaSalt` is not hex".into()))?;
    let sealed =
        hex::decode(field("enckey")?).map_err(|_| refused("its `enckey` is not hex".into()))?;
    let pem = unseal(password, &salt, &sealed).ok_or_else(|| {
        refused("the password is wrong (the file does not decrypt with it)".into())
    })?;
    let key_der = pem_private_key(&pem)
        .ok_or_else(|| refused(format!("it decrypts, but not to a PEM `{PEM_TYPE}` block")))?;
    if fields.get("keyType").map(String::as_str) != Some(SignatureKind::P521.as_str()) {
        return super::sigkey_rsa::signer(administrator, source, key_der, ski);
    }
    let secret = parse_sec1(&key_der)
        .ok_or_else(|| refused("its key is not a SEC1 P-521 private key".into()))?;
    let computed = p521_ski(&point(&secret.public_key()));
    if computed != ski {
        return Err(refused(format!(
            "the key's SKI is {}, not the {} the file names: the file is damaged or not this administrator's",
            hex::encode(computed),
            hex::encode(ski)
        )));
    }
    Ok(Box::new(P521Signer {
        administrator: administrator.to_string(),
        source,
        key: SigningKey::from(secret),
        ski,
    }))
}

/// A P-521 administrator key in memory (zeroized on drop by `SigningKey`).
pub struct P521Signer {
    administrator: String,
    source: String,
    key: SigningKey,
    ski: [u8; 32],
}

impl P521Signer {
    /// A signer from a key already in memory (tests, the simulator's rehearsals).
    pub fn new(administrator: &str, source: &str, secret: &SecretKey) -> Self {
        Self {
            administrator: administrator.to_string(),
            source: source.to_string(),
            key: SigningKey::from(secret.clone()),
            ski: p521_ski(&point(&secret.public_key())),
        }
    }

    /// ECDSA over SHA-512 with RFC 6979 nonces: the same block gives the same signature.
    pub fn sign_now(&self, block_der: &[u8]) -> Vec<u8> {
        let signature: Signature = self
            .key
            .sign_prehash(&Sha512::digest(block_der))
            .expect("signing a SHA-512 digest");
        p521_signature_der(&signature)
    }
}

impl Signer for P521Signer {
    fn administrator(&self) -> &str {
        &self.administrator
    }

    fn source(&self) -> String {
        self.source.clone()
    }

    fn ski(&self) -> [u8; 32] {
        self.ski
    }

    fn kind(&self) -> SignatureKind {
        SignatureKind::P521
    }

    fn sign<'a>(&'a self, block_der: &'a [u8]) -> SignFuture<'a> {
        let signature = self.sign_now(block_der);
        Box::pin(async move { Ok(signature) })
    }
}

fn aes_key(password: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, PBKDF2_ROUNDS, key.as_mut());
    key
}

fn unseal(password: &[u8], salt: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let key = aes_key(password, salt);
    let cipher = Aes256Gcm::new((&*key).into());
    let nonce = Nonce::try_from(&sealed[..NONCE_LEN]).ok()?;
    cipher
        .decrypt(&nonce, &sealed[NONCE_LEN..])
        .ok()
        .map(Zeroizing::new)
}

fn seal(password: &[u8], salt: &[u8], nonce: &[u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
    let key = aes_key(password, salt);
    let cipher = Aes256Gcm::new((&*key).into());
    let sealed = cipher
        .encrypt(&Nonce::from(*nonce), plain)
        .expect("AES-GCM seals a few hundred bytes");
    [&nonce[..], &sealed].concat()
}

/// The DER inside the first `-----BEGIN PRIVATE KEY-----` block.
fn pem_private_key(pem: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = format!("-----BEGIN {PEM_TYPE}-----");
    let end = format!("-----END {PEM_TYPE}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: Zeroizing<String> = Zeroizing::new(
        text[start..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    );
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()
        .map(Zeroizing::new)
}

fn pem_encode(der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {PEM_TYPE}-----\n"));
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_TYPE}-----\n"));
    out
}

/// SEC1 ECPrivateKey (RFC 5915): `SEQ{INTEGER 1, OS(d), [0]{OID secp521r1}, [1]{BIT STRING
/// 00 04 X Y}}`, as Go's `x509.MarshalECPrivateKey` writes it.
pub fn sec1_der(secret: &SecretKey) -> Zeroizing<Vec<u8>> {
    let d = Zeroizing::new(secret.to_bytes().to_vec());
    Zeroizing::new(der::sequence(&[
        der::element(0x02, &[1]),
        der::octet_string(&d),
        der::element(0xa0, &der::element(0x06, &OID_SECP521R1)),
        der::element(
            0xa1,
            &der::element(0x03, &[&[0u8][..], &point(&secret.public_key())].concat()),
        ),
    ]))
}

fn parse_sec1(bytes: &[u8]) -> Option<SecretKey> {
    let whole = der::read_whole(bytes, SEQUENCE, "ECPrivateKey").ok()?;
    let fields = der::elements(whole.value).ok()?;
    let (version, d) = (fields.first()?, fields.get(1)?);
    if version.value != [1] || d.tag != OCTET_STRING || d.value.len() > 66 {
        return None;
    }
    if let Some(curve) = fields.iter().find(|f| f.tag == 0xa0)
        && der::read_whole(curve.value, 0x06, "curve").ok()?.value != OID_SECP521R1
    {
        return None;
    }
    let mut padded = Zeroizing::new([0u8; 66]);
    padded[66 - d.value.len()..].copy_from_slice(d.value);
    SecretKey::from_slice(padded.as_ref()).ok()
}

/// A new P-521 signature key file's JSON for `secret`, sealed with `password` (random salt
/// and nonce), as the TKE CLI writes one.
pub fn file_text(secret: &SecretKey, password: &[u8]) -> String {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt).expect("the operating system's random numbers");
    getrandom::fill(&mut nonce).expect("the operating system's random numbers");
    let pem = pem_encode(&sec1_der(secret));
    let sealed = seal(password, &salt, &nonce, pem.as_bytes());
    let fields = serde_json::json!({
        "keyType": SignatureKind::P521.as_str(),
        "ski": hex::encode(p521_ski(&point(&secret.public_key()))),
        "seaSalt": hex::encode(salt),
        "enckey": hex::encode(sealed),
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&fields).expect("JSON of strings")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_opens_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.json");
        let secret = super::super::kari::random_secret();
        std::fs::write(&path, file_text(&secret, b"pw-alice")).unwrap();
        let signer = open("alice", &path, b"pw-alice").unwrap();
        assert_eq!(signer.ski(), p521_ski(&point(&secret.public_key())));
        assert_eq!(signer.kind(), SignatureKind::P521);
        let wrong = open("alice", &path, b"pw-bob").err().unwrap().to_string();
        assert!(wrong.contains("password is wrong"), "{wrong}");
        assert!(!wrong.contains("pw-"), "{wrong}");
        // The file's SKI changed: the key no longer matches it.
        let text = std::fs::read_to_string(&path).unwrap();
        let ski = hex::encode(signer.ski());
        std::fs::write(&path, text.replace(&ski, &"00".repeat(32))).unwrap();
        let mismatch = open("alice", &path, b"pw-alice").err().unwrap().to_string();
        assert!(mismatch.contains("not the 0000"), "{mismatch}");
    }
}
