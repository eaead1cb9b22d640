//! Linux on IBM Z and LinuxONE with Crypto Express adapters (EP11 and CCA): the reading side
//! of a `zcrypt:` backend. An APQN (one domain of one card) plays the part of a crypto unit,
//! and its registers are read from the kernel's sysfs (`mkvps`), below a root the operator
//! names, as s390-tools honour `SYSFS_ROOT`.
//!
//! - [`sysfs`]: cards and APQNs, their mode, availability and serial number.
//! - [`mkvps`]: the state and verification pattern of each master key register.
//!
//! Not yet a backend: the planner's model has no OLD register and one master key type per
//! unit; the generalisation comes first (issue 17).

pub mod fake;
pub mod mkvps;
pub mod sysfs;
