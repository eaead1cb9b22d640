//! An operator's tool in a change window (issue 13): Ctrl-C during an apply and the resume
//! command, key part passwords asked before the approval, and the README's walk-through run
//! as written.

mod conventions;
mod interrupt;
mod passwords;
mod pictures;
mod readme;
mod terminal;
