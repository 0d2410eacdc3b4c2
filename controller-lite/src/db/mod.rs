//! The data-access layer. All SQL lives under this module; the rest of the
//! controller calls typed functions that take a [`rusqlite::Connection`] or
//! [`rusqlite::Transaction`], run through [`Db::read`] and [`Db::write`]
//! (one transaction per state change; reads come from a pool of read-only
//! connections and never wait for a write). The SQL is plain and portable
//! (no SQLite-only functions in queries), so a PostgreSQL implementation of
//! the same functions can follow.

pub mod apps;
pub mod buildpacks;
pub mod builds;
pub mod cells;
pub mod jobs;
pub mod logs;
mod migrations;
pub mod orgs;
pub mod packages;
pub mod query;
pub mod routes;
pub mod scheduler;
pub mod tasks;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database file could not be opened or configured.
    #[error("opening database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A migration failed.
    #[error("database migration {version}: {source}")]
    Migration {
        /// The schema version being applied.
        version: usize,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A uniqueness constraint was violated.
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored JSON column could not be decoded.
    #[error("corrupt {column} in the database: {source}")]
    Corrupt {
        /// Which column.
        column: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// Any other SQLite error.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No read connection became free in time, or the pool could not open one.
    #[error("database read pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The blocking database thread went away.
    #[error("database worker failed: {0}")]
    Worker(String),
}

/// Read connections when the configuration names no number.
pub const DEFAULT_READERS: u32 = 4;

/// The controller's database in WAL mode with foreign keys on, used from
/// blocking threads: one writer connection (writes serialize on it, each in
/// an immediate transaction) and a small pool of read-only connections, so
/// reads never queue behind a write (WAL readers see the last commit).
#[derive(Clone)]
pub struct Db {
    writer: Arc<Mutex<Connection>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(10))
}

impl Db {
    /// Opens (creating if needed) the database at `path`, migrates it and
    /// opens [`DEFAULT_READERS`] read connections.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Self::open_with_readers(path, DEFAULT_READERS)
    }

    /// [`Db::open`] with `readers` read connections (at least one).
    pub fn open_with_readers(path: &Path, readers: u32) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        migrations::migrate(&mut conn)?;
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            configure(c)?;
            c.pragma_update(None, "query_only", "ON")
        });
        let readers = r2d2::Pool::builder()
            .max_size(readers.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(conn)),
            readers,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back on drop,
        // so the connection is still usable.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with a read-only connection from the pool on the calling
    /// (blocking) thread. It does not wait for writes in progress.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let conn = self.readers.get()?;
        f(&conn)
    }

    /// Runs `f` in one immediate transaction on the calling (blocking)
    /// thread; commits when it returns `Ok`, rolls back otherwise.
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// [`Db::write_blocking`] for closures with their own error type (any
    /// error rolls the transaction back).
    pub fn write_blocking_with<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(DbError::from)?;
        let value = f(&tx)?;
        tx.commit().map_err(DbError::from)?;
        Ok(value)
    }

    /// [`Db::read_blocking`] on tokio's blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(f))
            .await
            .map_err(|e| DbError::Worker(e.to_string()))?
    }

    /// [`Db::write_blocking`] on tokio's blocking pool.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(f))
            .await
            .map_err(|e| DbError::Worker(e.to_string()))?
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random guid.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Turns a unique-constraint violation into [`DbError::Conflict`] naming `what`.
pub(crate) fn conflict(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> DbError {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            DbError::Conflict(what.into())
        }
        _ => DbError::Sqlite(e),
    }
}

/// Decodes a JSON column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    text: &str,
) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|source| DbError::Corrupt { column, source })
}

/// Encodes a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A blob reference as stored in a row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBlob {
    /// SHA-256 hex (the content address).
    pub sha256: String,
    /// SHA-1 hex.
    pub sha1: String,
    /// Size in bytes.
    pub size: u64,
}

impl StoredBlob {
    pub(crate) fn from_columns(
        sha256: Option<String>,
        sha1: Option<String>,
        size: Option<i64>,
    ) -> Option<Self> {
        Some(Self {
            sha256: sha256?,
            sha1: sha1?,
            size: u64::try_from(size?).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn reads_do_not_queue_behind_a_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_with_readers(&dir.path().join("t.db"), 2).expect("open");
        db.write_blocking(|tx| users::upsert(tx, "a", "h", false))
            .expect("first user");
        let (inside, wait_inside) = mpsc::channel();
        let (release, wait_release) = mpsc::channel::<()>();
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || {
                db.write_blocking(|tx| {
                    users::upsert(tx, "b", "h", false)?;
                    let _ = inside.send(());
                    let _ = wait_release.recv_timeout(Duration::from_secs(10));
                    Ok(())
                })
            })
        };
        wait_inside
            .recv_timeout(Duration::from_secs(10))
            .expect("writer inside its transaction");
        // The write is open: a read answers at once with the last commit.
        let (tx, rx) = mpsc::channel();
        let reader = {
            let db = db.clone();
            std::thread::spawn(move || {
                let seen = db.read_blocking(|c| {
                    Ok((
                        users::by_name(c, "a")?.is_some(),
                        users::by_name(c, "b")?.is_some(),
                    ))
                });
                let _ = tx.send(seen.map_err(|e| e.to_string()));
            })
        };
        let seen = rx.recv_timeout(Duration::from_secs(2));
        let _ = release.send(());
        writer.join().expect("writer").expect("write");
        reader.join().expect("reader");
        assert_eq!(
            seen.expect("read answered while the write was open"),
            Ok((true, false))
        );
        let after = db
            .read_blocking(|c| Ok(users::by_name(c, "b")?.is_some()))
            .expect("read");
        assert!(after, "the committed write is visible to the next read");
    }

    #[test]
    fn read_connections_refuse_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("t.db")).expect("open");
        let err = db.read_blocking(|c| Ok(c.execute("DELETE FROM users", [])?));
        assert!(err.is_err(), "query_only connections cannot write");
    }
}
