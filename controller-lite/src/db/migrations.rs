//! Schema migrations, applied in order; `PRAGMA user_version` records how far
//! a database got. Each migration runs in its own transaction.

use rusqlite::Connection;

use super::DbError;

/// Version n is `MIGRATIONS[n - 1]`. Append only.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE organizations (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE spaces (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    org_guid TEXT NOT NULL REFERENCES organizations(guid) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (org_guid, name)
);
CREATE TABLE space_roles (
    space_guid TEXT NOT NULL REFERENCES spaces(guid) ON DELETE CASCADE,
    user_guid TEXT NOT NULL REFERENCES users(guid) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (space_guid, user_guid, role)
);
CREATE TABLE stacks (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    is_default INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE domains (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    internal INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE apps (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    space_guid TEXT NOT NULL REFERENCES spaces(guid) ON DELETE CASCADE,
    state TEXT NOT NULL,
    lifecycle_type TEXT NOT NULL,
    buildpacks TEXT NOT NULL,
    stack TEXT,
    environment TEXT NOT NULL,
    droplet_guid TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (space_guid, name)
);
CREATE TABLE processes (
    guid TEXT PRIMARY KEY,
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    type TEXT NOT NULL,
    command TEXT,
    instances INTEGER NOT NULL,
    memory_in_mb INTEGER NOT NULL,
    disk_in_mb INTEGER NOT NULL,
    health_check_type TEXT NOT NULL,
    health_check_endpoint TEXT,
    health_check_timeout INTEGER,
    health_check_invocation_timeout INTEGER,
    version TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (app_guid, type)
);
CREATE TABLE packages (
    guid TEXT PRIMARY KEY,
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    docker_image TEXT,
    blob_sha256 TEXT,
    blob_sha1 TEXT,
    blob_size INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE builds (
    guid TEXT PRIMARY KEY,
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    package_guid TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    lifecycle_type TEXT NOT NULL,
    buildpacks TEXT NOT NULL,
    stack TEXT,
    droplet_guid TEXT,
    staging_memory_in_mb INTEGER NOT NULL,
    staging_disk_in_mb INTEGER NOT NULL,
    created_by_guid TEXT NOT NULL,
    created_by_name TEXT NOT NULL,
    staging_deadline INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX builds_state ON builds(state, staging_deadline);
CREATE TABLE droplets (
    guid TEXT PRIMARY KEY,
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    build_guid TEXT,
    package_guid TEXT,
    state TEXT NOT NULL,
    lifecycle_type TEXT NOT NULL,
    process_types TEXT NOT NULL,
    execution_metadata TEXT NOT NULL,
    buildpacks TEXT NOT NULL,
    stack TEXT,
    docker_image TEXT,
    blob_sha256 TEXT,
    blob_sha1 TEXT,
    blob_size INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE staging_uploads (
    build_guid TEXT PRIMARY KEY REFERENCES builds(guid) ON DELETE CASCADE,
    blob_sha256 TEXT NOT NULL,
    blob_sha1 TEXT NOT NULL,
    blob_size INTEGER NOT NULL
);
CREATE TABLE buildpack_caches (
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    stack TEXT NOT NULL,
    blob_sha256 TEXT NOT NULL,
    blob_sha1 TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY (app_guid, stack)
);
CREATE TABLE tasks (
    guid TEXT PRIMARY KEY,
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    sequence_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    memory_in_mb INTEGER NOT NULL,
    disk_in_mb INTEGER NOT NULL,
    droplet_guid TEXT NOT NULL,
    failure_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (app_guid, sequence_id)
);
CREATE TABLE routes (
    guid TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    domain_guid TEXT NOT NULL REFERENCES domains(guid),
    space_guid TEXT NOT NULL REFERENCES spaces(guid) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (host, domain_guid, path)
);
CREATE TABLE route_destinations (
    guid TEXT PRIMARY KEY,
    route_guid TEXT NOT NULL REFERENCES routes(guid) ON DELETE CASCADE,
    app_guid TEXT NOT NULL REFERENCES apps(guid) ON DELETE CASCADE,
    process_type TEXT NOT NULL,
    port INTEGER NOT NULL,
    UNIQUE (route_guid, app_guid, process_type, port)
);
CREATE TABLE buildpacks (
    guid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    stack TEXT,
    position INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    locked INTEGER NOT NULL,
    state TEXT NOT NULL,
    filename TEXT,
    blob_sha256 TEXT,
    blob_sha1 TEXT,
    blob_size INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX buildpacks_name_stack ON buildpacks(name, IFNULL(stack, ''));
CREATE TABLE jobs (
    guid TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    state TEXT NOT NULL,
    errors TEXT NOT NULL,
    space_guid TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE scheduler_tasks (
    task_guid TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    definition TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT,
    result TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE desired_lrps (
    process_guid TEXT PRIMARY KEY,
    app_guid TEXT NOT NULL,
    instances INTEGER NOT NULL,
    definition TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE actual_lrps (
    process_guid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER,
    since INTEGER NOT NULL,
    cpu REAL NOT NULL,
    mem INTEGER NOT NULL,
    disk INTEGER NOT NULL,
    PRIMARY KEY (process_guid, idx)
);
"#,
    // 2: log-cache envelopes kept across restarts, a bounded ring per source.
    r#"
CREATE TABLE log_sources (
    source_id TEXT PRIMARY KEY,
    last_write INTEGER NOT NULL
);
CREATE INDEX log_sources_last_write ON log_sources(last_write);
CREATE TABLE log_envelopes (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    timestamp_ns INTEGER NOT NULL,
    source_type TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    line TEXT NOT NULL,
    stderr INTEGER NOT NULL
);
CREATE UNIQUE INDEX log_envelopes_source_time ON log_envelopes(source_id, timestamp_ns);
"#,
    // 3: app task deadlines (NULL: created_at + tasks.timeout_secs).
    r#"
ALTER TABLE tasks ADD COLUMN deadline INTEGER;
"#,
    // 4: per-cell credentials for the internal API (SHA-256 of each key).
    r#"
CREATE TABLE cell_credentials (
    cell_id TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
"#,
    // 5: the BBS (issue 7): Diego's records, cell presences and leases.
    // Times are Unix milliseconds; records keep diego's JSON beside the
    // columns queries need.
    r#"
CREATE TABLE bbs_desired_lrps (
    process_guid TEXT PRIMARY KEY,
    app_process_guid TEXT NOT NULL,
    app_guid TEXT NOT NULL,
    version TEXT NOT NULL,
    domain TEXT NOT NULL,
    target_instances INTEGER NOT NULL,
    retiring INTEGER NOT NULL,
    definition TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX bbs_desired_lrps_app_process ON bbs_desired_lrps(app_process_guid);
CREATE TABLE bbs_actual_lrps (
    process_guid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    presence TEXT NOT NULL,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    instance_guid TEXT,
    cell_id TEXT,
    net_info TEXT,
    crash_count INTEGER NOT NULL,
    crash_reason TEXT NOT NULL,
    since INTEGER NOT NULL,
    placement_error TEXT NOT NULL,
    mod_epoch TEXT NOT NULL,
    mod_index INTEGER NOT NULL,
    PRIMARY KEY (process_guid, idx, presence)
);
CREATE INDEX bbs_actual_lrps_cell ON bbs_actual_lrps(cell_id);
CREATE TABLE bbs_tasks (
    task_guid TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX bbs_tasks_state ON bbs_tasks(state);
CREATE TABLE bbs_cells (
    cell_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE bbs_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"#,
    // 6: the BBS's timer looks up CRASHED records every second.
    r#"
CREATE INDEX bbs_actual_lrps_state ON bbs_actual_lrps(state);
"#,
];

/// Brings the schema up to date.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| usize::try_from(v).unwrap_or(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let err = |source| DbError::Migration { version, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("first");
        migrate(&mut conn).expect("second");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, MIGRATIONS.len() as i64);
    }
}
