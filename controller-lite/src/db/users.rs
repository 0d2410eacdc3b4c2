//! Users and their space roles.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{new_guid, now, DbError};

/// A user who can log in.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's guid (`user_id` in tokens).
    pub guid: String,
    /// Login name.
    pub name: String,
    /// PHC argon2 hash.
    pub password_hash: String,
    /// Platform admin.
    pub admin: bool,
}

fn map(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        guid: r.get(0)?,
        name: r.get(1)?,
        password_hash: r.get(2)?,
        admin: r.get(3)?,
    })
}

/// Finds a user by login name.
pub fn by_name(conn: &Connection, name: &str) -> Result<Option<User>, DbError> {
    Ok(conn
        .query_row(
            "SELECT guid, name, password_hash, admin FROM users WHERE name = ?",
            [name],
            map,
        )
        .optional()?)
}

/// Finds a user by guid.
pub fn by_guid(conn: &Connection, guid: &str) -> Result<Option<User>, DbError> {
    Ok(conn
        .query_row(
            "SELECT guid, name, password_hash, admin FROM users WHERE guid = ?",
            [guid],
            map,
        )
        .optional()?)
}

/// Creates the user, or updates the hash and admin flag of an existing one.
pub fn upsert(
    tx: &Transaction<'_>,
    name: &str,
    password_hash: &str,
    admin: bool,
) -> Result<User, DbError> {
    if let Some(mut user) = by_name(tx, name)? {
        tx.execute(
            "UPDATE users SET password_hash = ?, admin = ? WHERE guid = ?",
            params![password_hash, admin, user.guid],
        )?;
        user.password_hash = password_hash.to_owned();
        user.admin = admin;
        return Ok(user);
    }
    let user = User {
        guid: new_guid(),
        name: name.to_owned(),
        password_hash: password_hash.to_owned(),
        admin,
    };
    tx.execute(
        "INSERT INTO users (guid, name, password_hash, admin, created_at) VALUES (?, ?, ?, ?, ?)",
        params![user.guid, user.name, user.password_hash, user.admin, now()],
    )?;
    Ok(user)
}

/// Gives `user_guid` `role` in a space (idempotent).
pub fn grant_space_role(
    tx: &Transaction<'_>,
    space_guid: &str,
    user_guid: &str,
    role: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT OR IGNORE INTO space_roles (space_guid, user_guid, role) VALUES (?, ?, ?)",
        params![space_guid, user_guid, role],
    )?;
    Ok(())
}

/// Whether the user has any role in the space.
pub fn has_space_role(
    conn: &Connection,
    space_guid: &str,
    user_guid: &str,
) -> Result<bool, DbError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM space_roles WHERE space_guid = ? AND user_guid = ?",
        params![space_guid, user_guid],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}
