//! The little DER the TKE wire protocol uses: SEQUENCEs of OCTET STRINGs, written with
//! minimal lengths (§2.4), read leniently: the cards answer with non-minimal long-form
//! lengths (`30 82 00 66`), which must be accepted. Indefinite lengths are refused.

use super::WireError;

pub const SEQUENCE: u8 = 0x30;
pub const OCTET_STRING: u8 = 0x04;
/// Elements one constructed value may hold when read, at most.
pub const ELEMENTS_MAX: usize = 256;

/// One tag-length-value, borrowing its value from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Reads one TLV from the start of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), WireError> {
    let [tag, first, rest @ ..] = input else {
        return Err(WireError::new(
            "a DER element is cut short (no tag and length)",
        ));
    };
    if tag & 0x1f == 0x1f {
        return Err(WireError::new(format!(
            "DER tag {tag:#04x} uses the multi-byte form, which this protocol never does"
        )));
    }
    let (length, rest) = match *first {
        short if short < 0x80 => (usize::from(short), rest),
        0x80 => return Err(WireError::new("a DER element has an indefinite length")),
        long => {
            let count = usize::from(long & 0x7f);
            if count > 4 || rest.len() < count {
                return Err(WireError::new(format!(
                    "a DER length of {count} bytes is too long or cut short"
                )));
            }
            let length = rest[..count]
                .iter()
                .fold(0usize, |n, b| (n << 8) | usize::from(*b));
            (length, &rest[count..])
        }
    };
    if rest.len() < length {
        return Err(WireError::new(format!(
            "a DER element of tag {tag:#04x} says {length} bytes but {} remain",
            rest.len()
        )));
    }
    Ok((
        Tlv {
            tag: *tag,
            value: &rest[..length],
        },
        &rest[length..],
    ))
}

/// Reads exactly one TLV with `tag` filling `input`.
pub fn read_whole<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<Tlv<'a>, WireError> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != tag {
        return Err(WireError::new(format!(
            "{what}: expected tag {tag:#04x}, found {:#04x}",
            tlv.tag
        )));
    }
    if !rest.is_empty() {
        return Err(WireError::new(format!(
            "{what}: {} bytes after its end",
            rest.len()
        )));
    }
    Ok(tlv)
}

/// The elements inside a constructed value.
pub fn elements(value: &[u8]) -> Result<Vec<Tlv<'_>>, WireError> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        if out.len() == ELEMENTS_MAX {
            return Err(WireError::new(format!(
                "more than {ELEMENTS_MAX} DER elements in one value"
            )));
        }
        let (tlv, after) = read(rest)?;
        out.push(tlv);
        rest = after;
    }
    Ok(out)
}

/// The OCTET STRINGs of a SEQUENCE that fills `input`.
pub fn octet_strings<'a>(input: &'a [u8], what: &str) -> Result<Vec<&'a [u8]>, WireError> {
    let sequence = read_whole(input, SEQUENCE, what)?;
    elements(sequence.value)?
        .into_iter()
        .map(|e| {
            if e.tag == OCTET_STRING {
                Ok(e.value)
            } else {
                Err(WireError::new(format!(
                    "{what}: an element has tag {:#04x}, not an OCTET STRING",
                    e.tag
                )))
            }
        })
        .collect()
}

/// A minimal DER length.
fn length(n: usize) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x100 => vec![0x81, n as u8],
        0x100..0x1_0000 => vec![0x82, (n >> 8) as u8, n as u8],
        _ => vec![0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8],
    }
}

pub fn element(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length(value.len()));
    out.extend_from_slice(value);
    out
}

pub fn octet_string(value: &[u8]) -> Vec<u8> {
    element(OCTET_STRING, value)
}

pub fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    element(SEQUENCE, &parts.concat())
}
