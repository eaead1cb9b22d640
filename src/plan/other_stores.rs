//! How a refusal names another store this journal never heard, when that store is a team
//! database rather than a state folder. A folder's command asks the databases this user's
//! mkplan wrote from this machine too (`store::postgres::witness`); their records come as
//! `FolderRewrap` and `UnreadFolder` named by the database as `--state` names it, and what
//! settles them there is not what settles a folder (no `chmod`, no `state push`). Pure.

use crate::model::{FolderRewrap, UnreadFolder};

/// Whether `state_dir`, as a witness names its store, is a database: mkplan shows one as
/// `postgres://USER@HOST:PORT/DATABASE`, and a state folder by its real path.
pub fn is_database(state_dir: &str) -> bool {
    state_dir.starts_with("postgres://")
}

/// "the journal in … says that against …, …", for a folder or a database.
pub fn rewrap_described(rewrap: &FolderRewrap) -> String {
    if rewrap.scope.is_none() && is_database(&rewrap.state_dir) {
        format!(
            "the team database {} (which this user's mkplan wrote from this machine) says that against {}, {}",
            rewrap.state_dir,
            rewrap.backend,
            rewrap.rewrap.describe()
        )
    } else {
        rewrap.describe()
    }
}

/// Where the rotation `rewrap` belongs to is settled (`FolderRewrap::settle_with`); for a
/// database, through it with the backend its records name.
pub fn settle_with(rewrap: &FolderRewrap) -> String {
    if rewrap.scope.is_none() && is_database(&rewrap.state_dir) {
        format!(
            "in that database: `--state {}` through the backend those records were made with ({}: the same `--backend`, and for `tke:` the same `--tke-endpoint`)",
            rewrap.state_dir, rewrap.backend
        )
    } else {
        rewrap.settle_with()
    }
}

/// Whether `identity` is a `tke:` backend's as mkplan bound records before it named the OA
/// root its replies' chains end at (`tke:REGION (URL)`, without `; … OA root …`).
pub fn is_legacy_tke(identity: &str) -> bool {
    identity.starts_with("tke:") && !identity.contains("OA root")
}

/// "the state folder … cannot be read: …", for a folder or a database.
pub fn unread_described(unread: &UnreadFolder) -> String {
    if is_database(&unread.state_dir) {
        format!(
            "the team database {} cannot be read: {} (mkplan keeps asking it while this user's journal heads name it: {})",
            unread.state_dir, unread.why, unread.head
        )
    } else {
        unread.describe()
    }
}

/// What makes `unread` answer again, or takes it out of the check on the operator's word
/// (`UnreadFolder::remedy`); for a database, reaching it again.
pub fn unread_remedy(unread: &UnreadFolder) -> String {
    if !is_database(&unread.state_dir) {
        return unread.remedy();
    }
    let heads = if unread.head.starts_with('/') {
        format!(
            "; if that database is gone for good and no rewrap recorded there can still land, remove its heads ({}), which is your word that it holds none (mkplan then also stops checking from this machine that it was not restored from an older backup)",
            unread.head
        )
    } else {
        String::new()
    };
    if unread.why.contains(crate::store::postgres::WITHHELD) {
        return format!(
            "if {db} is still in use, let mkplan read it as a witness without sending a password over that port (serve it with TLS whose certificate this machine trusts, or let your user in there without a password), and plan again{heads}",
            db = unread.state_dir
        );
    }
    format!(
        "reach the database {} again (its server up, and your password for it in ~/.pgpass, on a line for that very database as `psql` reads it: PGPASSWORD is never sent to a database nobody named today, and a password is never kept with the heads) and plan again{heads}",
        unread.state_dir
    )
}
