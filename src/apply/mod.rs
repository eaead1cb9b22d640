//! The executor: the write-ahead journal, the state directory lock, the settlement of
//! operations whose outcome is unknown, and the step runner.

pub mod audit;
pub mod evidence;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod session;
