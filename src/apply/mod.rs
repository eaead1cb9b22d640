//! The executor's parts. Today: the write-ahead journal that `apply` will write an intent to
//! before every operation and an outcome after it (issue: apply with journal).

pub mod journal;
