//! Linux on IBM Z and LinuxONE with Crypto Express adapters (EP11 and CCA): the reading side
//! of a `zcrypt:` backend. An APQN (one domain of one card) plays the part of a crypto unit,
//! and its registers are read from the kernel's sysfs (`mkvps`), below a root the operator
//! names, as s390-tools honour `SYSFS_ROOT`.
//!
//! - [`sysfs`]: cards and APQNs, their mode, availability and serial number.
//! - [`mkvps`]: the state and verification pattern of each master key register.
//!
//! - [`group`]: the `zcrypt:` backend of a domain group: registers and stores, read.
//! - [`inventory`]: every store on the machine, declared or not; [`ock_conf`]: openCryptoki's
//!   slots (`opencryptoki.conf`), which name its tokens' configs; [`token_config`]: what a
//!   token's config says (its APQNs, its pins), as openCryptoki reads it.
//! - [`zkey_list`]: `zkey list` as s390-tools prints it.
//! - [`stores`]: the tools' output, parsed ([`ock_list`]: `pkcshsm_mk_change list`); [`tools`]: the seam every tool run goes through.
//! - [`pins`]: the openCryptoki USER PINs, read from their sources and answered on stdin.
//! - [`fake`]: the fake platform (`mkplan sim zcrypt`), for tests and drills.

pub mod fake;
pub mod group;
pub mod inventory;
pub mod luks2;
pub mod mkvps;
pub mod ock_conf;
pub mod ock_list;
pub mod pins;
pub mod stores;
pub mod sysfs;
pub mod token_config;
pub mod tools;
pub mod zkey_list;
pub mod zkey_repository;
