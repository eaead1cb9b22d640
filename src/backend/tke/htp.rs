//! HTP framing (§2.1–§2.3): the request string `LEN;PCI request;XPNUM   ;CM;        ;HEX`
//! around a 32-byte CPRB header and a DER payload, and the response string
//! `LEN;ERRBLOCK;HEX` whose 156-character error block and CPRB return codes are checked before
//! the payload is read. Both directions, so that the simulator's TKE front end speaks the same
//! bytes as the client.

use super::WireError;

pub const CPRB_LEN: usize = 32;
pub const ERROR_BLOCK_LEN: usize = 156;
/// Largest payload framed or read (the largest reply, an admin certificate, is ~1 KiB).
pub const PAYLOAD_LEN_MAX: usize = 64 * 1024;

/// The 32-byte CPRB header of a request (§2.2).
pub fn cprb(domain: u32, payload_len: usize) -> [u8; CPRB_LEN] {
    let mut header = [0u8; CPRB_LEN];
    header[0..2].copy_from_slice(&[0x00, 0x20]);
    header[2] = 0x04;
    header[5] = 0x80;
    header[6..8].copy_from_slice(b"T4");
    header[12..16].copy_from_slice(&domain.to_be_bytes());
    header[28..32].copy_from_slice(&(payload_len as u32).to_be_bytes());
    header
}

/// The HTP request string for one DER payload to crypto module `cm`, domain `domain`.
pub fn request(cm: u32, domain: u32, payload: &[u8]) -> String {
    let mut bytes = cprb(domain, payload.len()).to_vec();
    bytes.extend_from_slice(payload);
    let body = format!(
        ";PCI request;XPNUM   ;{cm};        ;{}",
        hex::encode_upper(&bytes)
    );
    format!("{}{body}", body.len())
}

/// A request as the service receives it (for the simulator's front end).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub cm: u32,
    pub domain: u32,
    pub payload: Vec<u8>,
}

/// Parses a request string; the error says which field is wrong, as a host error of type 9
/// (request syntax) would.
pub fn parse_request(text: &str) -> Result<Request, WireError> {
    let fields: Vec<&str> = text.splitn(6, ';').collect();
    let [length, pci, rule, cm, blank, hex_cprb] = fields[..] else {
        return Err(WireError::new(
            "the request string does not have its six fields",
        ));
    };
    let after = text.len() - length.len();
    if length.parse::<usize>().ok() != Some(after) {
        return Err(WireError::new(format!(
            "the request string's length prefix {} is not the {after} characters after it",
            crate::quote::quote(length)
        )));
    }
    if pci != "PCI request" || rule != "XPNUM   " || blank != "        " {
        return Err(WireError::new(
            "the request string's fixed fields are wrong",
        ));
    }
    let cm = cm.parse().map_err(|_| {
        WireError::new(format!(
            "the crypto module index {} is not an integer",
            crate::quote::quote(cm)
        ))
    })?;
    let bytes = hex::decode(hex_cprb)
        .map_err(|_| WireError::new("the request's CPRB is not hex (odd length or a bad digit)"))?;
    let (domain, payload) = cprb_payload(&bytes)?;
    Ok(Request {
        cm,
        domain,
        payload: payload.to_vec(),
    })
}

/// The domain and the payload of a CPRB (header checked for length only).
fn cprb_payload(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if bytes.len() < CPRB_LEN {
        return Err(WireError::new(format!(
            "the CPRB has {} bytes, fewer than its 32-byte header",
            bytes.len()
        )));
    }
    let domain = u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let length = u32::from_be_bytes(bytes[28..32].try_into().expect("4 bytes")) as usize;
    if length > PAYLOAD_LEN_MAX || CPRB_LEN + length > bytes.len() {
        return Err(WireError::new(format!(
            "the CPRB says a {length}-byte payload but carries {}",
            bytes.len() - CPRB_LEN
        )));
    }
    Ok((domain, &bytes[CPRB_LEN..CPRB_LEN + length]))
}

/// The response string for a payload, with an all-clear error block.
pub fn response(domain: u32, payload: &[u8]) -> String {
    let mut bytes = cprb(domain, payload.len()).to_vec();
    bytes[2] = 0x04;
    bytes[5] = 0x00;
    bytes.extend_from_slice(payload);
    let block = format!("{:<width$}", "000000000000000000", width = ERROR_BLOCK_LEN);
    let body = format!(";{block};{}", hex::encode_upper(&bytes));
    format!("{}{body}", body.len())
}

/// A response string carrying a host error (error type ≠ `00`).
pub fn host_error_response(kind: u8, rc: u32, reason: u32, text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_ascii() && c != ';' { c } else { '?' })
        .take(100)
        .collect();
    let block = format!(
        "{kind:02}{rc:>8}{reason:>8}{:<8}{:<30}{:<100}",
        "MKPLAN", "SIMULATOR", text
    );
    let body = format!(";{block};");
    format!("{}{body}", body.len())
}

/// Checks the error block and the CPRB return codes (§5.1 steps 2–3) and returns the payload.
pub fn parse_response(text: &str) -> Result<Vec<u8>, WireError> {
    let mut fields = text.splitn(3, ';');
    let _length = fields.next();
    let block = fields
        .next()
        .ok_or_else(|| WireError::new("the response string has no error block"))?;
    // Its fields are sliced by position: only ASCII makes positions and characters agree.
    if !block.is_ascii() {
        return Err(WireError::new(
            "the response's error block is not ASCII text",
        ));
    }
    if block.len() < ERROR_BLOCK_LEN {
        return Err(WireError::new(format!(
            "the response's error block has {} characters, not {ERROR_BLOCK_LEN}",
            block.len()
        )));
    }
    let kind = &block[0..2];
    let cprb_hex = fields.next().filter(|f| !f.is_empty());
    if kind != "00" || cprb_hex.is_none() {
        return Err(host_error(block));
    }
    let bytes = hex::decode(cprb_hex.expect("checked"))
        .map_err(|_| WireError::new("the response's CPRB is not hex"))?;
    if bytes.len() < CPRB_LEN {
        return Err(WireError::new(
            "the response's CPRB is shorter than its header",
        ));
    }
    let rc = u16::from_be_bytes([bytes[16], bytes[17]]);
    let reason = u16::from_be_bytes([bytes[18], bytes[19]]);
    if rc != 0 || reason != 0 {
        return Err(WireError::new(format!(
            "the crypto unit's adapter answered CPRB return code {rc}, reason {reason}"
        )));
    }
    let (_, payload) = cprb_payload(&bytes)?;
    Ok(payload.to_vec())
}

/// A host or catcher error (§5.2), as `type-rc-reason` with its meaning. The block is the
/// service's text: its fields are shown escaped (an ASCII control character, a newline, could
/// drive the terminal or forge a line of the message).
fn host_error(block: &str) -> WireError {
    let number = |range: std::ops::Range<usize>| {
        let field = block[range].trim();
        field
            .parse::<u64>()
            .map_or_else(|_| crate::quote::bare(field), |n| n.to_string())
    };
    let kind = number(0..2);
    let (rc, reason) = (number(2..10), number(10..18));
    let text = crate::quote::bare_at_most(block[56..ERROR_BLOCK_LEN].trim(), ERROR_BLOCK_LEN - 56);
    let meaning = match kind.as_str() {
        "9" => match rc.as_str() {
            "1" | "2" => "the crypto module index is not an integer or out of range",
            "4" | "5" => "the domain index is not an integer or out of range",
            "12" => "the request carries bad hex",
            "13" => "the request's hex has an odd length",
            _ => "the request's syntax is wrong",
        },
        "10" => "TSO error on the service host",
        "11" => "internal error of the service's TKE host program",
        "13" => "host dataset error",
        "15" if rc == "2" => "the service host timed out reading from the crypto unit",
        "15" => "TCP/IP error on the service host",
        "18" => "RACF (access control) error on the service host",
        "23" => "sockets error on the service host",
        _ => "host error",
    };
    WireError::new(format!(
        "host error {kind}-{rc}-{reason}: {meaning}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(" ({text})")
        }
    ))
}
