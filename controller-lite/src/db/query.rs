//! Filtered, ordered, paginated listing shared by every resource.

use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use super::DbError;

/// `column IN (values)`; column names come from code, never from clients.
#[derive(Debug, Clone)]
pub struct Filter {
    /// A column of the listed table.
    pub column: &'static str,
    /// Accepted values (any of them).
    pub values: Vec<String>,
}

/// Ordering and page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// 1-based page number.
    pub page: u64,
    /// Resources per page.
    pub per_page: u64,
    /// Column to order by (from code).
    pub order_by: &'static str,
    /// Descending order.
    pub descending: bool,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: 50,
            order_by: "created_at",
            descending: false,
        }
    }
}

/// One page of rows plus the total number of matching rows.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// Rows matching the filters, all pages together.
    pub total: u64,
    /// This page's rows.
    pub items: Vec<T>,
}

/// Lists `table` rows matching every filter (`extra` is an additional
/// trusted SQL condition, e.g. a visibility rule with its parameters).
pub fn list<T>(
    conn: &Connection,
    table: &'static str,
    columns: &'static str,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Listing<T>, DbError> {
    let mut clauses = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    for f in filters {
        if f.values.is_empty() {
            clauses.push("0 = 1".to_owned());
            continue;
        }
        let marks = vec!["?"; f.values.len()].join(",");
        clauses.push(format!("{} IN ({marks})", f.column));
        params.extend(f.values.iter().cloned().map(Value::Text));
    }
    if let Some((sql, values)) = extra {
        clauses.push(format!("({sql})"));
        params.extend(values);
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM {table} {where_sql}"),
        rusqlite::params_from_iter(params.iter()),
        |r| r.get(0),
    )?;
    let direction = if page.descending { "DESC" } else { "ASC" };
    let offset = page.page.saturating_sub(1).saturating_mul(page.per_page);
    let sql = format!(
        "SELECT {columns} FROM {table} {where_sql} ORDER BY {} {direction}, rowid {direction} LIMIT {} OFFSET {}",
        page.order_by, page.per_page, offset
    );
    let mut stmt = conn.prepare(&sql)?;
    let items = stmt
        .query_map(rusqlite::params_from_iter(params.iter()), map)?
        .collect::<rusqlite::Result<Vec<T>>>()?;
    Ok(Listing {
        total: u64::try_from(total).unwrap_or(0),
        items,
    })
}
