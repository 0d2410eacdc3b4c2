//! Organizations, spaces, stacks and domains: the platform's static frame.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{conflict, new_guid, now, DbError};

/// An organization.
#[derive(Debug, Clone)]
pub struct Org {
    /// Guid.
    pub guid: String,
    /// Unique name.
    pub name: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// A space inside an organization.
#[derive(Debug, Clone)]
pub struct Space {
    /// Guid.
    pub guid: String,
    /// Name, unique in its organization.
    pub name: String,
    /// Owning organization.
    pub org_guid: String,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// A stack (root filesystem name).
#[derive(Debug, Clone)]
pub struct Stack {
    /// Guid.
    pub guid: String,
    /// Name, e.g. `cflinuxfs4`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The default stack.
    pub is_default: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// A shared domain for routes.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Guid.
    pub guid: String,
    /// Domain name.
    pub name: String,
    /// Internal (container-to-container) domain.
    pub internal: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

const ORG_COLS: &str = "guid, name, created_at, updated_at";
const SPACE_COLS: &str = "guid, name, org_guid, created_at, updated_at";
const STACK_COLS: &str = "guid, name, description, is_default, created_at, updated_at";
const DOMAIN_COLS: &str = "guid, name, internal, created_at, updated_at";

fn map_org(r: &Row<'_>) -> rusqlite::Result<Org> {
    Ok(Org {
        guid: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

fn map_space(r: &Row<'_>) -> rusqlite::Result<Space> {
    Ok(Space {
        guid: r.get(0)?,
        name: r.get(1)?,
        org_guid: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn map_stack(r: &Row<'_>) -> rusqlite::Result<Stack> {
    Ok(Stack {
        guid: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        is_default: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

fn map_domain(r: &Row<'_>) -> rusqlite::Result<Domain> {
    Ok(Domain {
        guid: r.get(0)?,
        name: r.get(1)?,
        internal: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// Visibility rule for a non-admin user: spaces where they hold a role.
pub fn visible_spaces_sql(column: &str, user_guid: &str) -> (String, Vec<Value>) {
    (
        format!("{column} IN (SELECT space_guid FROM space_roles WHERE user_guid = ?)"),
        vec![Value::Text(user_guid.to_owned())],
    )
}

/// Creates an organization.
pub fn create_org(tx: &Transaction<'_>, name: &str) -> Result<Org, DbError> {
    let t = now();
    let org = Org {
        guid: new_guid(),
        name: name.to_owned(),
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO organizations (guid, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
        params![org.guid, org.name, t, t],
    )
    .map_err(conflict(format!("organization {name:?}")))?;
    Ok(org)
}

/// One organization.
pub fn get_org(conn: &Connection, guid: &str) -> Result<Option<Org>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {ORG_COLS} FROM organizations WHERE guid = ?"),
            [guid],
            map_org,
        )
        .optional()?)
}

/// An organization by name.
pub fn org_by_name(conn: &Connection, name: &str) -> Result<Option<Org>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {ORG_COLS} FROM organizations WHERE name = ?"),
            [name],
            map_org,
        )
        .optional()?)
}

/// Lists organizations.
pub fn list_orgs(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Org>, DbError> {
    query::list(
        conn,
        "organizations",
        ORG_COLS,
        filters,
        extra,
        page,
        map_org,
    )
}

/// Creates a space.
pub fn create_space(tx: &Transaction<'_>, org_guid: &str, name: &str) -> Result<Space, DbError> {
    let t = now();
    let space = Space {
        guid: new_guid(),
        name: name.to_owned(),
        org_guid: org_guid.to_owned(),
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO spaces (guid, name, org_guid, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        params![space.guid, space.name, space.org_guid, t, t],
    )
    .map_err(conflict(format!("space {name:?}")))?;
    Ok(space)
}

/// One space.
pub fn get_space(conn: &Connection, guid: &str) -> Result<Option<Space>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {SPACE_COLS} FROM spaces WHERE guid = ?"),
            [guid],
            map_space,
        )
        .optional()?)
}

/// A space by organization and name.
pub fn space_by_name(
    conn: &Connection,
    org_guid: &str,
    name: &str,
) -> Result<Option<Space>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {SPACE_COLS} FROM spaces WHERE org_guid = ? AND name = ?"),
            [org_guid, name],
            map_space,
        )
        .optional()?)
}

/// Lists spaces.
pub fn list_spaces(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Space>, DbError> {
    query::list(conn, "spaces", SPACE_COLS, filters, extra, page, map_space)
}

/// Creates a stack, or returns the existing one of that name.
pub fn ensure_stack(
    tx: &Transaction<'_>,
    name: &str,
    description: &str,
    is_default: bool,
) -> Result<Stack, DbError> {
    if let Some(stack) = stack_by_name(tx, name)? {
        tx.execute(
            "UPDATE stacks SET is_default = ? WHERE guid = ?",
            params![is_default, stack.guid],
        )?;
        return Ok(Stack {
            is_default,
            ..stack
        });
    }
    create_stack(tx, name, description, is_default)
}

/// Creates a stack.
pub fn create_stack(
    tx: &Transaction<'_>,
    name: &str,
    description: &str,
    is_default: bool,
) -> Result<Stack, DbError> {
    let t = now();
    let stack = Stack {
        guid: new_guid(),
        name: name.to_owned(),
        description: description.to_owned(),
        is_default,
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO stacks (guid, name, description, is_default, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        params![stack.guid, stack.name, stack.description, is_default, t, t],
    )
    .map_err(conflict(format!("stack {name:?}")))?;
    Ok(stack)
}

/// A stack by name.
pub fn stack_by_name(conn: &Connection, name: &str) -> Result<Option<Stack>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {STACK_COLS} FROM stacks WHERE name = ?"),
            [name],
            map_stack,
        )
        .optional()?)
}

/// A stack by guid.
pub fn get_stack(conn: &Connection, guid: &str) -> Result<Option<Stack>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {STACK_COLS} FROM stacks WHERE guid = ?"),
            [guid],
            map_stack,
        )
        .optional()?)
}

/// Lists stacks.
pub fn list_stacks(
    conn: &Connection,
    filters: &[Filter],
    page: &Page,
) -> Result<Listing<Stack>, DbError> {
    query::list(conn, "stacks", STACK_COLS, filters, None, page, map_stack)
}

/// Creates a domain, or returns the existing one of that name.
pub fn ensure_domain(tx: &Transaction<'_>, name: &str) -> Result<Domain, DbError> {
    if let Some(d) = domain_by_name(tx, name)? {
        return Ok(d);
    }
    let t = now();
    let d = Domain {
        guid: new_guid(),
        name: name.to_owned(),
        internal: false,
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO domains (guid, name, internal, created_at, updated_at) VALUES (?, ?, 0, ?, ?)",
        params![d.guid, d.name, t, t],
    )?;
    Ok(d)
}

/// A domain by name.
pub fn domain_by_name(conn: &Connection, name: &str) -> Result<Option<Domain>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {DOMAIN_COLS} FROM domains WHERE name = ?"),
            [name],
            map_domain,
        )
        .optional()?)
}

/// A domain by guid.
pub fn get_domain(conn: &Connection, guid: &str) -> Result<Option<Domain>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {DOMAIN_COLS} FROM domains WHERE guid = ?"),
            [guid],
            map_domain,
        )
        .optional()?)
}

/// Lists domains.
pub fn list_domains(
    conn: &Connection,
    filters: &[Filter],
    page: &Page,
) -> Result<Listing<Domain>, DbError> {
    query::list(
        conn,
        "domains",
        DOMAIN_COLS,
        filters,
        None,
        page,
        map_domain,
    )
}
