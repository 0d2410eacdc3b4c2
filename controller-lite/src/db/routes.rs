//! Routes and their destinations.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{conflict, new_guid, now, DbError};

/// A route: host + domain + path.
#[derive(Debug, Clone)]
pub struct Route {
    /// Guid.
    pub guid: String,
    /// Host name (may be empty).
    pub host: String,
    /// Path, empty or starting with `/`.
    pub path: String,
    /// Domain.
    pub domain_guid: String,
    /// Owning space.
    pub space_guid: String,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// Where a route sends traffic.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Guid.
    pub guid: String,
    /// Route.
    pub route_guid: String,
    /// App.
    pub app_guid: String,
    /// Process type.
    pub process_type: String,
    /// App port.
    pub port: i64,
}

const COLS: &str = "guid, host, path, domain_guid, space_guid, created_at, updated_at";

fn map(r: &Row<'_>) -> rusqlite::Result<Route> {
    Ok(Route {
        guid: r.get(0)?,
        host: r.get(1)?,
        path: r.get(2)?,
        domain_guid: r.get(3)?,
        space_guid: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// Creates a route.
pub fn create(
    tx: &Transaction<'_>,
    host: &str,
    path: &str,
    domain_guid: &str,
    space_guid: &str,
) -> Result<Route, DbError> {
    let t = now();
    let route = Route {
        guid: new_guid(),
        host: host.to_owned(),
        path: path.to_owned(),
        domain_guid: domain_guid.to_owned(),
        space_guid: space_guid.to_owned(),
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        &format!("INSERT INTO routes ({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
        params![
            route.guid,
            route.host,
            route.path,
            route.domain_guid,
            route.space_guid,
            t,
            t
        ],
    )
    .map_err(conflict(format!("route {host:?} with path {path:?}")))?;
    Ok(route)
}

/// A route by its address.
pub fn find(
    conn: &Connection,
    host: &str,
    domain_guid: &str,
    path: &str,
) -> Result<Option<Route>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM routes WHERE host = ? AND domain_guid = ? AND path = ?"),
            [host, domain_guid, path],
            map,
        )
        .optional()?)
}

/// One route.
pub fn get(conn: &Connection, guid: &str) -> Result<Option<Route>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM routes WHERE guid = ?"),
            [guid],
            map,
        )
        .optional()?)
}

/// Lists routes; the `app_guids` filter goes through destinations.
pub fn list(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Route>, DbError> {
    query::list(conn, "routes", COLS, filters, extra, page, map)
}

/// Deletes a route.
pub fn delete(tx: &Transaction<'_>, guid: &str) -> Result<bool, DbError> {
    Ok(tx.execute("DELETE FROM routes WHERE guid = ?", [guid])? > 0)
}

/// Adds a destination unless the same one exists.
pub fn add_destination(
    tx: &Transaction<'_>,
    route_guid: &str,
    app_guid: &str,
    process_type: &str,
    port: i64,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT OR IGNORE INTO route_destinations (guid, route_guid, app_guid, process_type, port) VALUES (?, ?, ?, ?, ?)",
        params![new_guid(), route_guid, app_guid, process_type, port],
    )?;
    Ok(())
}

/// Removes an app from a route.
pub fn remove_app(
    tx: &Transaction<'_>,
    route_guid: &str,
    app_guid: &str,
) -> Result<usize, DbError> {
    Ok(tx.execute(
        "DELETE FROM route_destinations WHERE route_guid = ? AND app_guid = ?",
        [route_guid, app_guid],
    )?)
}

/// Removes one destination.
pub fn delete_destination(tx: &Transaction<'_>, guid: &str) -> Result<bool, DbError> {
    Ok(tx.execute("DELETE FROM route_destinations WHERE guid = ?", [guid])? > 0)
}

/// Destinations of a route.
pub fn destinations(conn: &Connection, route_guid: &str) -> Result<Vec<Destination>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT guid, route_guid, app_guid, process_type, port FROM route_destinations WHERE route_guid = ? ORDER BY rowid",
    )?;
    let rows = stmt
        .query_map([route_guid], |r| {
            Ok(Destination {
                guid: r.get(0)?,
                route_guid: r.get(1)?,
                app_guid: r.get(2)?,
                process_type: r.get(3)?,
                port: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// `host.domain/path` of every route of an app.
pub fn app_urls(conn: &Connection, app_guid: &str) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT r.host, d.name, r.path FROM routes r JOIN domains d ON d.guid = r.domain_guid
         WHERE r.guid IN (SELECT route_guid FROM route_destinations WHERE app_guid = ?) ORDER BY r.rowid",
    )?;
    let rows = stmt
        .query_map([app_guid], |r| {
            let (host, domain, path): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(if host.is_empty() {
                format!("{domain}{path}")
            } else {
                format!("{host}.{domain}{path}")
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
