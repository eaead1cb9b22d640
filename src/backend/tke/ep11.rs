//! The EP11 payloads of the unsigned queries (§2.4, §3): domain info (the master-key
//! registers), domain attributes (thresholds, permissions) and domain administrators (SKIs, and
//! each one's certificate for its name); the return values and codes checked as §5.1 orders;
//! and the same structures built, for the simulator's TKE front end.

use super::WireError;
use super::der::{self, SEQUENCE};
use crate::model::{CurrentRegister, NewRegister, VerificationPattern};

pub const GET_XCP_INFO: u32 = 0x0001_0026;
pub const M_ADMIN: u32 = 0x0001_0029;
/// get_xcp_info subtypes.
pub const INFO_DOMAIN: u32 = 3;
/// m_admin query commands.
pub const ADMQ_DOMADMIN: u32 = 0x0001_0002;
pub const ADMQ_DOM_ATTRS: u32 = 0x0001_000A;
/// The domain's importer key (EP11h `XCP_ADMQ_IMPORTER_CERT`; not used by the SDK): mkplan
/// reads it before a load and asks for a new one (GEN_IMPORTER) when the card answers "not
/// found" (96/60). Its output is read as GEN_IMPORTER's (an inference, tke-wire.md §8).
pub const ADMQ_IMPORTER: u32 = 0x0001_000F;
/// The module's OA (device) certificates: input = u32 index, 0 = the current epoch key.
pub const ADMQ_DEVICE_CERT: u32 = 0x0001_0003;
/// The block return code and reason a card answers past the end of its OA chain (96/60).
pub const CERTIFICATE_NOT_FOUND: (u32, u32) = (96, 60);
/// Bytes of an SKI in the admin list, and of the domain info the SDK requires at least.
pub const SKI_LEN: usize = 32;
pub const DOMAIN_INFO_LEN_MIN: usize = 80;
/// Administrators one domain may have (EP11h).
pub const ADMINISTRATORS_MAX: usize = 8;

/// Domain-info flag bits (byte 71; §3.1).
pub const FLAG_ADMINS: u8 = 0x01;
pub const FLAG_CURRENT: u8 = 0x02;
pub const FLAG_NEW: u8 = 0x04;
pub const FLAG_COMMITTED: u8 = 0x08;
pub const FLAG_LEFT_IMPRINT: u8 = 0x10;

/// Attribute ids (§3.2).
pub const ATTR_SIGNATURE_THRESHOLD: u32 = 1;
pub const ATTR_REVOCATION_THRESHOLD: u32 = 2;
pub const ATTR_PERMISSIONS: u32 = 3;
pub const ATTR_MODE: u32 = 4;
pub const ATTR_COMPLIANCE: u32 = 5;
/// What the SDK assumes when a threshold is missing.
pub const THRESHOLD_MISSING: u32 = 999;

fn u32_bytes(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn be_u32(bytes: &[u8], what: &str) -> Result<u32, WireError> {
    let array: [u8; 4] = bytes
        .try_into()
        .map_err(|_| WireError::new(format!("{what} has {} bytes, not 4", bytes.len())))?;
    Ok(u32::from_be_bytes(array))
}

/// `get_xcp_info` for the domain info of `domain`.
pub fn domain_info_request(domain: u32) -> Vec<u8> {
    der::sequence(&[
        der::octet_string(&u32_bytes(GET_XCP_INFO)),
        der::octet_string(&u32_bytes(domain)),
        der::octet_string(&u32_bytes(INFO_DOMAIN)),
        der::octet_string(&u32_bytes(0)),
    ])
}

/// An unsigned `m_admin` query: admin domain = domain ‖ instance 0, no module id, counter or
/// signatures.
pub fn admin_query(domain: u32, command: u32, input: &[u8]) -> Vec<u8> {
    let admin_domain = [domain.to_be_bytes(), [0; 4]].concat();
    admin_query_in(domain, &admin_domain, command, input)
}

/// Device certificate `index` of the module behind `domain`: a card-level query, so its
/// admin domain is all zeros (the SDK's `QueryDeviceCertificateReq`).
pub fn device_certificate_query(domain: u32, index: u32) -> Vec<u8> {
    admin_query_in(domain, &[0; 8], ADMQ_DEVICE_CERT, &u32_bytes(index))
}

fn admin_query_in(domain: u32, admin_domain: &[u8], command: u32, input: &[u8]) -> Vec<u8> {
    let block = der::sequence(&[
        der::octet_string(&u32_bytes(command)),
        der::octet_string(admin_domain),
        der::octet_string(&[]),
        der::octet_string(&[]),
        der::octet_string(input),
    ]);
    der::sequence(&[
        der::octet_string(&u32_bytes(M_ADMIN)),
        der::octet_string(&u32_bytes(domain)),
        der::octet_string(&block),
        der::octet_string(&[]),
    ])
}

/// Checks an XCPRsp (function id, echoed domain, return value) and returns its info.
pub fn parse_xcp_info(payload: &[u8], domain: u32) -> Result<Vec<u8>, WireError> {
    let fields = der::octet_strings(payload, "the get_xcp_info response")?;
    let [function, echoed, value, info] = fields[..] else {
        return Err(WireError::new(format!(
            "the get_xcp_info response has {} fields, not 4",
            fields.len()
        )));
    };
    check_echo(function, GET_XCP_INFO, echoed, domain)?;
    let value = be_u32(value, "the get_xcp_info return value")?;
    if value != 0 {
        return Err(WireError::ep11(value, None));
    }
    Ok(info.to_vec())
}

fn check_echo(function: &[u8], expected: u32, echoed: &[u8], domain: u32) -> Result<(), WireError> {
    let function = be_u32(function, "the response's function id")?;
    if function != expected {
        return Err(WireError::new(format!(
            "the response is for function {function:#010x}, not {expected:#010x}"
        )));
    }
    let echoed = be_u32(echoed, "the response's domain")?;
    if echoed != domain {
        return Err(WireError::new(format!(
            "the response is for domain {echoed}, not {domain}"
        )));
    }
    Ok(())
}

/// The useful part of an m_admin response (xcpAdminRspBlk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    pub command: u32,
    pub admin_domain: Vec<u8>,
    pub module_id: Vec<u8>,
    pub counter: Vec<u8>,
    pub output: Vec<u8>,
    /// The xcpAdminRspBlk DER exactly as carried: what the card's OA signature covers.
    pub block: Vec<u8>,
    /// The xcpAdminRsp's SignerInfos (empty when the reply carries none).
    pub signer_infos: Vec<u8>,
}

impl AdminResponse {
    /// The admin domain of a domain-level query's answer must name the domain asked: it is the
    /// one domain field under the card's OA signature, and signed commands carry it back
    /// (§4.2). The SDK checks no echoed domain (ep11cmds/ep11cprb.go `buildAdminRspBlk`);
    /// mkplan refuses a mismatch rather than plan against another domain's registers.
    pub fn check_admin_domain(&self, domain: u32) -> Result<(), WireError> {
        if self.admin_domain.len() != 8 {
            return Err(WireError::new(format!(
                "the response block's admin domain has {} bytes, not 8",
                self.admin_domain.len()
            )));
        }
        let echoed = be_u32(&self.admin_domain[..4], "the response block's admin domain")?;
        if echoed != domain {
            return Err(WireError::new(format!(
                "the response block is for domain {echoed}, not {domain}"
            )));
        }
        Ok(())
    }

    /// The module's serial number: the ASCII of the module id's first 8 bytes.
    pub fn serial(&self) -> String {
        let end = self.module_id.len().min(8);
        String::from_utf8_lossy(&self.module_id[..end])
            .trim_end_matches(['\0', ' '])
            .to_string()
    }
}

/// Checks an xcpAdminRsp (§5.1 steps 4–5) and returns its block.
pub fn parse_admin_response(
    payload: &[u8],
    domain: u32,
    command: u32,
) -> Result<AdminResponse, WireError> {
    let fields = der::octet_strings(payload, "the m_admin response")?;
    if fields.len() < 3 {
        return Err(WireError::new(format!(
            "the m_admin response has {} fields, fewer than 3",
            fields.len()
        )));
    }
    check_echo(fields[0], M_ADMIN, fields[1], domain)?;
    let value = be_u32(fields[2], "the m_admin return value")?;
    if value != 0 {
        return Err(WireError::ep11(value, None));
    }
    let signed = *fields
        .get(3)
        .ok_or_else(|| WireError::new("the m_admin response has no response block"))?;
    let block = der::octet_strings(signed, "the m_admin response block")?;
    let [cmd, admin_domain, module_id, counter, code, output] = block[..] else {
        return Err(WireError::new(format!(
            "the m_admin response block has {} fields, not 6",
            block.len()
        )));
    };
    let code = be_u32(code, "the response block's return code")?;
    if code != 0 {
        let reason = (output.len() >= 4).then(|| be_u32(&output[..4], "reason").unwrap_or(0));
        return Err(WireError::ep11(code, reason));
    }
    let cmd = be_u32(cmd, "the response block's command")?;
    if cmd != command {
        return Err(WireError::new(format!(
            "the response block answers command {cmd:#010x}, not {command:#010x}"
        )));
    }
    Ok(AdminResponse {
        command: cmd,
        admin_domain: admin_domain.to_vec(),
        module_id: module_id.to_vec(),
        counter: counter.to_vec(),
        output: output.to_vec(),
        block: signed.to_vec(),
        signer_infos: fields.get(4).map(|f| f.to_vec()).unwrap_or_default(),
    })
}

/// A device certificate reply: `None` when the card answers "not found" (96/60), which ends
/// the chain; any other error is an error.
pub fn parse_device_certificate(
    payload: &[u8],
    domain: u32,
) -> Result<Option<AdminResponse>, WireError> {
    let fields = der::octet_strings(payload, "the m_admin response")?;
    if let Some(block) = fields.get(3)
        && let Ok(block) = der::octet_strings(block, "the m_admin response block")
        && let [_, _, _, _, code, output] = block[..]
        && be_u32(code, "code").ok() == Some(CERTIFICATE_NOT_FOUND.0)
        && output.get(..4).and_then(|r| be_u32(r, "reason").ok()) == Some(CERTIFICATE_NOT_FOUND.1)
    {
        return Ok(None);
    }
    parse_admin_response(payload, domain, ADMQ_DEVICE_CERT).map(Some)
}

/// The two master-key registers, from the domain info (§3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registers {
    pub current: CurrentRegister,
    pub new: NewRegister,
    pub flags: u8,
}

pub fn parse_domain_info(info: &[u8], domain: u32) -> Result<Registers, WireError> {
    if info.len() < DOMAIN_INFO_LEN_MIN {
        return Err(WireError::new(format!(
            "the domain info has {} bytes, fewer than {DOMAIN_INFO_LEN_MIN}",
            info.len()
        )));
    }
    let reported = be_u32(&info[0..4], "the domain info's domain")?;
    if reported != domain {
        return Err(WireError::new(format!(
            "the domain info is for domain {reported}, not {domain}"
        )));
    }
    let vp = |range: std::ops::Range<usize>| {
        VerificationPattern::from_bytes(info[range].try_into().expect("32 bytes"))
    };
    let flags = info[71];
    let current = if flags & FLAG_CURRENT != 0 {
        CurrentRegister::Valid(vp(4..36))
    } else {
        CurrentRegister::Empty
    };
    let new = match (flags & FLAG_NEW != 0, flags & FLAG_COMMITTED != 0) {
        (false, _) => NewRegister::Empty,
        (true, false) => NewRegister::FullUncommitted(vp(36..68)),
        (true, true) => NewRegister::FullCommitted(vp(36..68)),
    };
    Ok(Registers {
        current,
        new,
        flags,
    })
}

/// Domain attributes (§3.2), with the SDK's defaults for missing ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub signature_threshold: u32,
    pub revocation_threshold: u32,
    pub permissions: u32,
    pub mode: u32,
    pub compliance: u32,
}

pub fn parse_attributes(output: &[u8]) -> Result<Attributes, WireError> {
    if !output.len().is_multiple_of(8) {
        return Err(WireError::new(format!(
            "the domain attributes have {} bytes, not a multiple of 8",
            output.len()
        )));
    }
    let mut attributes = Attributes {
        signature_threshold: THRESHOLD_MISSING,
        revocation_threshold: THRESHOLD_MISSING,
        permissions: 0,
        mode: 0,
        compliance: 0,
    };
    for record in output.chunks_exact(8) {
        let id = be_u32(&record[..4], "an attribute id")?;
        let value = be_u32(&record[4..], "an attribute value")?;
        match id {
            ATTR_SIGNATURE_THRESHOLD => attributes.signature_threshold = value,
            ATTR_REVOCATION_THRESHOLD => attributes.revocation_threshold = value,
            ATTR_PERMISSIONS => attributes.permissions = value,
            ATTR_MODE => attributes.mode = value,
            ATTR_COMPLIANCE => attributes.compliance = value,
            _ => {}
        }
    }
    Ok(attributes)
}

/// The SKIs of the installed administrators (§3.3).
pub fn parse_ski_list(output: &[u8]) -> Result<Vec<[u8; SKI_LEN]>, WireError> {
    if !output.len().is_multiple_of(SKI_LEN) || output.len() / SKI_LEN > ADMINISTRATORS_MAX {
        return Err(WireError::new(format!(
            "the administrator list has {} bytes: not a multiple of {SKI_LEN}, or more than {ADMINISTRATORS_MAX} administrators",
            output.len()
        )));
    }
    Ok(output
        .chunks_exact(SKI_LEN)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect())
}

const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// An administrator's name: the issuer CN of its certificate, spaces trimmed (§3.3).
pub fn certificate_name(certificate: &[u8]) -> Result<String, WireError> {
    let what = "the administrator's certificate";
    let cert = der::read_whole(certificate, SEQUENCE, what)?;
    let cert = der::elements(cert.value)?;
    let tbs = cert
        .first()
        .filter(|t| t.tag == SEQUENCE)
        .ok_or_else(|| WireError::new(format!("{what} has no to-be-signed part")))?;
    let tbs = der::elements(tbs.value)?;
    // [0] version (optional), serial, algorithm, issuer.
    let skip = usize::from(tbs.first().is_some_and(|t| t.tag == 0xa0));
    let issuer = tbs
        .get(skip + 2)
        .filter(|t| t.tag == SEQUENCE)
        .ok_or_else(|| WireError::new(format!("{what} has no issuer")))?;
    for set in der::elements(issuer.value)? {
        for pair in der::elements(set.value)? {
            let pair = der::elements(pair.value)?;
            if let [oid, text] = pair[..]
                && oid.value == OID_COMMON_NAME
            {
                return Ok(String::from_utf8_lossy(text.value).trim().to_string());
            }
        }
    }
    Err(WireError::new(format!(
        "{what}'s issuer has no common name"
    )))
}

// ---------------------------------------------------------------------------------------------
// The service's side, for the simulator's TKE front end

/// A get_xcp_info response carrying the domain info of one unit.
pub fn domain_info_response(
    domain: u32,
    current: &CurrentRegister,
    new: &NewRegister,
    admins: bool,
    imprint: bool,
) -> Vec<u8> {
    let mut info = vec![0u8; DOMAIN_INFO_LEN_MIN];
    info[0..4].copy_from_slice(&domain.to_be_bytes());
    let mut flags = 0u8;
    if let Some(vp) = current.verification_pattern() {
        info[4..36].copy_from_slice(&vp.to_bytes());
        flags |= FLAG_CURRENT;
    }
    if let Some(vp) = new.verification_pattern() {
        info[36..68].copy_from_slice(&vp.to_bytes());
        flags |= FLAG_NEW;
        if matches!(new, NewRegister::FullCommitted(_)) {
            flags |= FLAG_COMMITTED;
        }
    }
    if admins {
        flags |= FLAG_ADMINS;
    }
    if !imprint {
        flags |= FLAG_LEFT_IMPRINT;
    }
    info[71] = flags;
    der::sequence(&[
        der::octet_string(&u32_bytes(GET_XCP_INFO)),
        der::octet_string(&u32_bytes(domain)),
        der::octet_string(&u32_bytes(0)),
        der::octet_string(&info),
    ])
}

/// What an unsigned m_admin query asks: (command, cmd input).
pub fn parse_admin_query(payload: &[u8], domain: u32) -> Result<(u32, Vec<u8>), WireError> {
    let fields = der::octet_strings(payload, "the m_admin request")?;
    let [function, echoed, block, _signers] = fields[..] else {
        return Err(WireError::new("the m_admin request does not have 4 fields"));
    };
    check_echo(function, M_ADMIN, echoed, domain)?;
    let block = der::octet_strings(block, "the m_admin request block")?;
    let [command, _admin_domain, _module, _counter, input] = block[..] else {
        return Err(WireError::new(
            "the m_admin request block does not have 5 fields",
        ));
    };
    Ok((be_u32(command, "the command")?, input.to_vec()))
}

/// Which function a request payload calls, and its domain field.
pub fn function_of(payload: &[u8]) -> Result<(u32, u32), WireError> {
    let fields = der::octet_strings(payload, "the request")?;
    match fields[..] {
        [function, domain, ..] => Ok((
            be_u32(function, "the function id")?,
            be_u32(domain, "the domain")?,
        )),
        _ => Err(WireError::new("the request has fewer than 2 fields")),
    }
}

/// An m_admin response with return value 0 and a block with `code` and `output`.
pub fn admin_response(
    domain: u32,
    command: u32,
    module_id: &[u8],
    counter: u64,
    code: u32,
    output: &[u8],
) -> Vec<u8> {
    let admin_domain = [domain.to_be_bytes(), [0; 4]].concat();
    let block = admin_response_block(&admin_domain, command, module_id, counter, code, output);
    signed_admin_response(domain, &block, &[])
}

/// An xcpAdminRspBlk (what a card's OA signature covers).
pub fn admin_response_block(
    admin_domain: &[u8],
    command: u32,
    module_id: &[u8],
    counter: u64,
    code: u32,
    output: &[u8],
) -> Vec<u8> {
    let counter = [[0u8; 8], counter.to_be_bytes()].concat();
    der::sequence(&[
        der::octet_string(&u32_bytes(command)),
        der::octet_string(admin_domain),
        der::octet_string(module_id),
        der::octet_string(&counter),
        der::octet_string(&u32_bytes(code)),
        der::octet_string(output),
    ])
}

/// An m_admin response with return value 0 carrying `block` and its SignerInfos.
pub fn signed_admin_response(domain: u32, block: &[u8], signer_infos: &[u8]) -> Vec<u8> {
    der::sequence(&[
        der::octet_string(&u32_bytes(M_ADMIN)),
        der::octet_string(&u32_bytes(domain)),
        der::octet_string(&u32_bytes(0)),
        der::octet_string(block),
        der::octet_string(signer_infos),
    ])
}

/// An XCPRsp or xcpAdminRsp that carries only a non-zero return value.
pub fn error_response(function: u32, domain: u32, value: u32) -> Vec<u8> {
    der::sequence(&[
        der::octet_string(&u32_bytes(function)),
        der::octet_string(&u32_bytes(domain)),
        der::octet_string(&u32_bytes(value)),
    ])
}

/// Attribute records for thresholds and permissions.
pub fn attributes_output(signature: u32, revocation: u32, permissions: u32) -> Vec<u8> {
    [
        (ATTR_SIGNATURE_THRESHOLD, signature),
        (ATTR_REVOCATION_THRESHOLD, revocation),
        (ATTR_PERMISSIONS, permissions),
        (ATTR_MODE, 0),
        (ATTR_COMPLIANCE, 0),
    ]
    .iter()
    .flat_map(|(id, value)| [id.to_be_bytes(), value.to_be_bytes()].concat())
    .collect()
}

/// A certificate shaped as the TKE makes them (§3.3), enough to carry a name: version,
/// serial, algorithm, issuer {org "TKE Administration", CN name}, validity, subject, key.
/// The signature is not a real one: the simulator has no TKE signing key.
pub fn certificate(name: &str, ski: &[u8]) -> Vec<u8> {
    let printable = |text: &str| der::element(0x13, text.as_bytes());
    let attribute = |oid: &[u8], text: &str| {
        der::element(
            0x31,
            &der::sequence(&[der::element(0x06, oid), printable(text)]),
        )
    };
    let issuer = der::sequence(&[
        attribute(&OID_ORGANIZATION, "TKE Administration"),
        attribute(&OID_COMMON_NAME, name),
    ]);
    let algorithm = der::sequence(&[der::element(
        0x06,
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    )]);
    let time = der::element(0x18, b"20260101000000Z");
    let tbs = der::sequence(&[
        der::element(0xa0, &der::element(0x02, &[2])),
        der::element(0x02, &ski[..8.min(ski.len())]),
        algorithm.clone(),
        issuer.clone(),
        der::sequence(&[time.clone(), time]),
        issuer,
        der::sequence(&[algorithm.clone(), der::element(0x03, &[0])]),
        der::element(
            0xa3,
            &der::sequence(&[der::sequence(&[
                der::element(0x06, &[0x55, 0x1d, 0x0e]),
                der::octet_string(ski),
            ])]),
        ),
    ]);
    der::sequence(&[tbs, algorithm, der::element(0x03, &[0])])
}
