//! The other state folders of this machine, asked again just before a rewrap is sent. Two
//! folders of one user may plan the same instance at the same moment (each holds only its own
//! lock): neither has sent anything yet, so neither plan refuses. Each journals its rewrap's
//! intent (fsynced) before it reads the others, so of two runs that get that far, the later
//! reader finds the earlier one's intent, and at most one sends.

use crate::model::OtherFolders;

/// What the other folders said when the plan was made, and what they say now.
pub trait OtherFolderWitness: Sync {
    fn at_plan(&self) -> &OtherFolders;
    fn now(&self) -> OtherFolders;
}

/// What another folder says of `instance` now (`now`, read after this run's intents are on
/// disk) that it did not say when the plan was made (`before`): a rewrap recorded since (or
/// whose record changed: an unanswered one now completed), or a folder that may hold one and
/// can no longer be read. A rewrap on record before the plan was weighed by the planner. Each
/// is described. One reading serves every rewrap that starts in the same scheduling round:
/// their intents were all written, under one fsync, before it was made.
pub fn sent_since_plan(before: &OtherFolders, now: &OtherFolders, instance: &str) -> Vec<String> {
    let rewraps = now
        .rewraps_of(instance)
        .iter()
        .filter(|r| !before.rewraps_of(instance).contains(r))
        .map(crate::plan::other_stores::rewrap_described);
    let was_unread = before.unread_for(instance);
    let unread = now
        .unread_for(instance)
        .into_iter()
        .filter(|u| !was_unread.contains(u))
        .map(crate::plan::other_stores::unread_described);
    rewraps.chain(unread).collect()
}

/// Why the rewrap of an instance is not sent: what the other folders said since the plan.
pub fn not_sent_why(said: &[String]) -> String {
    format!(
        "another state folder of this machine recorded a rewrap of this instance since the plan was made, or may hold one (a team database this user wrote from this machine counts as one): {}. Two rewraps make the key storage unusable; this run sends none",
        said.join("; ")
    )
}
