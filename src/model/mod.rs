//! Pure types for what mkplan reasons about: desired key state, live crypto units and their
//! registers, verification patterns, and the journal's evidence. No I/O, no clock.

pub mod desired;
pub mod domain_group;
pub mod domain_group_desired;
pub mod domain_group_inventory;
pub mod domain_group_pins;
pub mod domain_group_selector;
pub mod hpcs_view;
mod input_error;
pub mod journal_evidence;
pub mod live;
pub mod loss;
pub mod ock_tokens;
pub mod parser_words;
pub mod quick_yaml;
mod register;
pub mod registers;
pub mod signature_keys;
pub mod unit;
mod vp;

pub use desired::{DesiredInstance, DesiredMasterKey, DesiredState, KeyPartSource, parse_desired};
pub use input_error::{
    InputError, YAML_EVENTS_MAX, YAML_NODES_MAX, YamlTop, from_yaml_str, from_yaml_str_within,
    yaml_top,
};
pub use journal_evidence::{
    ATTESTATION_TTL_S, Began, FolderRewrap, FreshAttestation, JournalEvidence, JournalRewrap,
    JournalRotation, OtherFolders, RewrapOnRecord, UnreadFolder,
};
pub use live::{LiveFleet, LiveInstance, RewrapStatus};
pub use parser_words::KeyWords;
pub use register::{CurrentRegister, NewRegister};
pub use unit::{Administrator, CryptoUnit, Mode, Ski, UnitType};
pub use vp::{VerificationPattern, VerificationPatternError};
