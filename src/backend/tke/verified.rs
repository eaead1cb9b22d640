//! Replies verified to a root key (tke-wire.md §3.5, §4.6): each crypto module's OA chain,
//! read once per run and checked to IBM's roots (module `oa`), and the OA signature on every
//! m_admin reply, with one re-read of the chain after a reply that fails. The test root
//! (`MKPLAN_TKE_TEST_OA_ROOT`) is trusted only for a TKE endpoint on this machine.

use p521::ecdsa::VerifyingKey;

use super::{
    BackendError, TEST_OA_ROOT_VARIABLE, Target, TkeBackend, WireError, ep11, oa, oa_test_chain,
};

impl TkeBackend {
    /// Trusts mkplan's test OA root besides IBM's (`MKPLAN_TKE_TEST_OA_ROOT`). Its private
    /// key is public, so it is refused unless the TKE endpoint is on this machine.
    pub fn trust_test_root(&mut self) -> Result<(), BackendError> {
        if !self.loopback {
            return Err(BackendError::Endpoint(format!(
                "{TEST_OA_ROOT_VARIABLE} is set, but {} is not on this machine: the test OA root's key is public, so it is trusted only for a local simulator (`mkplan sim serve --protocol tke`). Nothing was sent. Unset {TEST_OA_ROOT_VARIABLE} to read real crypto units",
                self.shown
            )));
        }
        self.roots.push(oa_test_chain::test_root());
        self.roots.push(oa_test_chain::second_test_root());
        Ok(())
    }

    /// The warning every run with the test root prints (the CLI prints it, even with `-q`).
    pub fn test_root_warning(&self) -> Option<String> {
        (self.roots.len() > oa::IBM_ROOTS.len()).then(|| format!(
            "warning: {TEST_OA_ROOT_VARIABLE} is set: {} trusts replies signed by mkplan's TEST OA root, whose key is public. Never set it outside tests",
            self.shown
        ))
    }

    /// One m_admin query whose reply carries the module's OA signature. A reply that fails
    /// it is asked again once after re-reading the module's chain (epoch keys change), then
    /// refused naming the module: never read as data.
    pub(super) async fn admin(
        &self,
        unit: &Target<'_>,
        command: u32,
        input: &[u8],
    ) -> Result<ep11::AdminResponse, BackendError> {
        let key = self.epoch_key(unit, false).await?;
        let response = self.admin_unverified(unit, command, input).await?;
        if oa::verify_reply(&response.signer_infos, &response.block, &key).is_ok() {
            return Ok(response);
        }
        tracing::info!(
            "crypto unit {}: a reply failed its OA signature; re-reading crypto module {}'s OA certificates once",
            unit.hsm_id,
            unit.module
        );
        let key = self.epoch_key(unit, true).await?;
        let response = self.admin_unverified(unit, command, input).await?;
        oa::verify_reply(&response.signer_infos, &response.block, &key).map_err(|e| {
            BackendError::Protocol(format!(
                "crypto unit {}: crypto module {} sent a reply that is not signed by it ({e}), also after re-reading its OA certificates; nothing was read from it. Stop and ask IBM support: something between mkplan and the crypto module may be changing replies",
                unit.hsm_id, unit.module
            ))
        })?;
        Ok(response)
    }

    async fn admin_unverified(
        &self,
        unit: &Target<'_>,
        command: u32,
        input: &[u8],
    ) -> Result<ep11::AdminResponse, BackendError> {
        let payload = self
            .query(unit, &ep11::admin_query(unit.domain, command, input))
            .await?;
        let wire =
            |e: WireError| BackendError::Protocol(format!("crypto unit {}: {e}", unit.hsm_id));
        let response = ep11::parse_admin_response(&payload, unit.domain, command).map_err(wire)?;
        response.check_admin_domain(unit.domain).map_err(wire)?;
        Ok(response)
    }

    /// The epoch key of `unit`'s crypto module: read from its OA chain (§3.5 steps 2–3) the
    /// first time, or again when `reread`. The chain is read from the module each time; only
    /// its check is skipped when the very same bytes verified before in this process
    /// (`oa::verify_chain_once`).
    pub(super) async fn epoch_key(
        &self,
        unit: &Target<'_>,
        reread: bool,
    ) -> Result<VerifyingKey, BackendError> {
        let mut keys = self.epoch_keys.lock().await;
        if !reread && let Some(key) = keys.get(&unit.module) {
            return Ok(*key);
        }
        let chain = self.device_certificates(unit).await?;
        let key = oa::verify_chain_once(&chain, &self.roots).map_err(|e| {
            BackendError::Protocol(format!(
                "crypto unit {}: crypto module {}'s OA certificate chain is refused: {e}. mkplan trusts a crypto module only when its chain ends at one of IBM's OA root keys; stop and ask IBM support",
                unit.hsm_id, unit.module
            ))
        })?;
        self.note_root(unit, &chain)?;
        keys.insert(unit.module.clone(), key);
        Ok(key)
    }

    /// Keeps the OA root `chain` (verified) ends at as whose modules answer here; one that
    /// ends at another root than the modules before it in this run is refused: another
    /// service answers at this URL (a simulator and the service behind one forwarder).
    fn note_root(&self, unit: &Target<'_>, chain: &[Vec<u8>]) -> Result<(), BackendError> {
        let label = root_label(chain, &self.roots);
        let mut under = self
            .answered_under
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match under.as_deref() {
            Some(before) if before != label => Err(BackendError::Protocol(format!(
                "crypto unit {}: crypto module {}'s OA certificate chain ends at {label}, but the crypto modules that answered {} before in this run end at {before}: two different services answer there (a `sim serve --protocol tke` and the service behind one address?). Nothing more is sent in this run; make sure {} reaches only the service you mean, and run again",
                unit.hsm_id, unit.module, self.shown, self.shown
            ))),
            Some(_) => Ok(()),
            None => {
                *under = Some(label);
                Ok(())
            }
        }
    }
    /// Device certificates 0, 1, … until the card answers "not found" (96/60).
    async fn device_certificates(&self, unit: &Target<'_>) -> Result<Vec<Vec<u8>>, BackendError> {
        let wire = |e: WireError| {
            BackendError::Protocol(format!(
                "crypto unit {}: reading crypto module {}'s OA certificates: {e}",
                unit.hsm_id, unit.module
            ))
        };
        let mut chain = Vec::new();
        for index in 0..=oa::CHAIN_LEN_MAX {
            let payload = self
                .query(
                    unit,
                    &ep11::device_certificate_query(unit.domain, index as u32),
                )
                .await?;
            match ep11::parse_device_certificate(&payload, unit.domain).map_err(wire)? {
                Some(certificate) => chain.push(certificate.output),
                None => return Ok(chain),
            }
        }
        Err(wire(WireError::new(format!(
            "it has more than {} certificates",
            oa::CHAIN_LEN_MAX
        ))))
    }
}

/// Whose crypto modules a verified chain comes from, as a backend identity names it: any of
/// IBM's roots, or a test root by its SKI (two simulated services differ).
pub(super) fn root_label(chain: &[Vec<u8>], roots: &[oa::RootKey]) -> String {
    let last = chain.last().and_then(|c| oa::OaCertificate::parse(c).ok());
    let root = last.and_then(|last| {
        let signer = hex::encode(last.signer_ski);
        roots
            .iter()
            .find(|r| r.ski == signer && r.family == last.family)
    });
    match root {
        Some(root) if oa::IBM_ROOTS.contains(root) => "IBM's OA root".into(),
        Some(root) => format!("TEST OA root {}", &root.ski[..16]),
        None => "an OA root mkplan cannot name".into(),
    }
}

#[cfg(test)]
mod root_tests {
    use super::*;

    #[test]
    fn two_simulated_services_have_two_root_labels() {
        let roots = [
            oa_test_chain::test_root(),
            oa_test_chain::second_test_root(),
        ];
        let first = root_label(&oa_test_chain::test_module(0, false).certificates, &roots);
        let second = root_label(
            &oa_test_chain::second_service_module(0).certificates,
            &roots,
        );
        assert_eq!(first, "TEST OA root 7070707070707070");
        assert_eq!(second, "TEST OA root 7272727272727272");
    }

    #[test]
    fn the_identity_names_the_root_and_a_second_root_in_one_run_stops_it() {
        let mut backend = TkeBackend::new(
            "tke:us-south",
            "http://127.0.0.1:9",
            super::super::Credentials::None,
            1,
        )
        .unwrap();
        backend.trust_test_root().unwrap();
        assert_eq!(
            backend.legacy_identity(),
            "tke:us-south (http://127.0.0.1:9)"
        );
        assert!(backend.identity().ends_with("; OA root not read yet)"));
        let unit = Target {
            instance: "i",
            hsm_id: "h",
            module: "m".into(),
            cm: 0,
            domain: 0,
        };
        let first = oa_test_chain::test_module(0, false).certificates;
        backend.note_root(&unit, &first).unwrap();
        assert_eq!(
            backend.identity(),
            "tke:us-south (http://127.0.0.1:9; TEST OA root 7070707070707070)"
        );
        backend.note_root(&unit, &first).unwrap();
        let second = oa_test_chain::second_service_module(0).certificates;
        let stopped = backend.note_root(&unit, &second).unwrap_err().to_string();
        assert!(stopped.contains("two different services"), "{stopped}");
    }
}
