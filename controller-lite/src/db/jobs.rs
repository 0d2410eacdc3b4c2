//! Asynchronous jobs (`apply_manifest`).

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{from_json, new_guid, now, to_json, DbError};

/// A job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Guid.
    pub guid: String,
    /// e.g. `space.apply_manifest`.
    pub operation: String,
    /// `PROCESSING`, `COMPLETE` or `FAILED`.
    pub state: String,
    /// Error details of a failed job.
    pub errors: Vec<String>,
    /// Space the job works on.
    pub space_guid: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// Creates a PROCESSING job.
pub fn create(
    tx: &Transaction<'_>,
    operation: &str,
    space_guid: Option<&str>,
) -> Result<Job, DbError> {
    let t = now();
    let job = Job {
        guid: new_guid(),
        operation: operation.to_owned(),
        state: "PROCESSING".to_owned(),
        errors: Vec::new(),
        space_guid: space_guid.map(str::to_owned),
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO jobs (guid, operation, state, errors, space_guid, created_at, updated_at) VALUES (?, ?, ?, '[]', ?, ?, ?)",
        params![job.guid, job.operation, job.state, job.space_guid, t, t],
    )?;
    Ok(job)
}

/// Finishes a job: COMPLETE without errors, FAILED with them.
pub fn finish(tx: &Transaction<'_>, guid: &str, errors: &[String]) -> Result<(), DbError> {
    let state = if errors.is_empty() {
        "COMPLETE"
    } else {
        "FAILED"
    };
    tx.execute(
        "UPDATE jobs SET state = ?, errors = ?, updated_at = ? WHERE guid = ?",
        params![state, to_json(&errors), now(), guid],
    )?;
    Ok(())
}

/// After a restart: jobs that were running failed.
pub fn fail_interrupted(tx: &Transaction<'_>) -> Result<usize, DbError> {
    Ok(tx.execute(
        "UPDATE jobs SET state = 'FAILED', errors = '[\"interrupted by a controller restart\"]', updated_at = ? WHERE state = 'PROCESSING'",
        [now()],
    )?)
}

/// One job.
pub fn get(conn: &Connection, guid: &str) -> Result<Option<Job>, DbError> {
    let raw = conn
        .query_row(
            "SELECT guid, operation, state, errors, space_guid, created_at, updated_at FROM jobs WHERE guid = ?",
            [guid],
            |r| {
                Ok((
                    Job {
                        guid: r.get(0)?,
                        operation: r.get(1)?,
                        state: r.get(2)?,
                        errors: Vec::new(),
                        space_guid: r.get(4)?,
                        created_at: r.get(5)?,
                        updated_at: r.get(6)?,
                    },
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    raw.map(|(mut job, errors)| {
        job.errors = from_json("jobs.errors", &errors)?;
        Ok(job)
    })
    .transpose()
}
