//! Who may call the internal (cell-facing) API: the shared key from the
//! configuration (`internal.api_key`, or the generated one in `data_dir`),
//! or a per-cell key from the `cell_credentials` table. Keys are compared
//! as SHA-256 digests: the shared one in constant time, per-cell ones by
//! looking the digest up (only digests are stored). The scheduler of
//! issue 7 issues a key per cell with [`issue_key`] (or an operator with
//! `controller-lite cell-key`) and revokes it with [`revoke_key`].

use sha2::{Digest as _, Sha256};

use crate::auth::{self, AuthError};
use crate::db::{cells, Db, DbError};

/// Errors managing cell credentials.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// No randomness for a new key.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The cell id is empty, too long or has characters other than
    /// letters, digits, `.`, `_` and `-`.
    #[error("invalid cell id {0:?}: use 1-128 letters, digits, '.', '_' or '-'")]
    InvalidCellId(String),
}

/// Who called the internal API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellIdentity {
    /// The holder of the shared key.
    Shared,
    /// A cell with its own key.
    Cell(String),
}

impl std::fmt::Display for CellIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shared => f.write_str("shared-key"),
            Self::Cell(id) => write!(f, "cell:{id}"),
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn validate(cell_id: &str) -> Result<(), CellError> {
    let ok = !cell_id.is_empty()
        && cell_id.len() <= 128
        && cell_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CellError::InvalidCellId(cell_id.to_owned()))
    }
}

/// Generates a new key for `cell_id` (replacing any previous one) and
/// returns it; only its digest is kept. Blocking.
pub fn issue_key(db: &Db, cell_id: &str) -> Result<String, CellError> {
    validate(cell_id)?;
    let key = auth::random_secret(32)?;
    let hex_digest = hex::encode(digest(&key));
    db.write_blocking(|tx| cells::put(tx, cell_id, &hex_digest))?;
    tracing::info!(cell_id, "cell key issued");
    Ok(key)
}

/// Revokes a cell's key; false when it had no valid one. Blocking.
pub fn revoke_key(db: &Db, cell_id: &str) -> Result<bool, CellError> {
    validate(cell_id)?;
    let revoked = db.write_blocking(|tx| cells::revoke(tx, cell_id))?;
    if revoked {
        tracing::info!(cell_id, "cell key revoked");
    }
    Ok(revoked)
}

/// Who holds `presented`, if anyone: the shared key first (constant-time
/// digest comparison), then the per-cell keys. Blocking.
pub fn authenticate(
    db: &Db,
    shared_key: &str,
    presented: &str,
) -> Result<Option<CellIdentity>, CellError> {
    let given = digest(presented);
    let shared = digest(shared_key);
    // Fold every byte so the time does not depend on where they differ.
    let differs = given
        .iter()
        .zip(shared.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differs == 0 {
        return Ok(Some(CellIdentity::Shared));
    }
    let hex_digest = hex::encode(given);
    Ok(db
        .read_blocking(|c| cells::cell_for_digest(c, &hex_digest))?
        .map(CellIdentity::Cell))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_per_cell_keys_authenticate_and_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("t.db")).expect("db");
        let who = |k: &str| authenticate(&db, "shared", k).expect("auth");
        assert_eq!(who("shared"), Some(CellIdentity::Shared));
        assert_eq!(who("nope"), None);
        let key = issue_key(&db, "cell-1").expect("issue");
        assert_eq!(who(&key), Some(CellIdentity::Cell("cell-1".into())));
        let rotated = issue_key(&db, "cell-1").expect("rotate");
        assert_eq!(who(&key), None, "the old key stops working");
        assert_eq!(who(&rotated), Some(CellIdentity::Cell("cell-1".into())));
        assert!(revoke_key(&db, "cell-1").expect("revoke"));
        assert!(!revoke_key(&db, "cell-1").expect("twice"));
        assert_eq!(who(&rotated), None);
        assert_eq!(who("shared"), Some(CellIdentity::Shared));
        assert!(matches!(
            issue_key(&db, "bad id/"),
            Err(CellError::InvalidCellId(_))
        ));
        let listed = db.read_blocking(cells::list).expect("list");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_at.is_some());
    }
}
