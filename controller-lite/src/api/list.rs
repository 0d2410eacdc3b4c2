//! Query parameters of list endpoints (filters, `page`, `per_page`,
//! `order_by`) and the paginated response shape.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use serde_json::{json, Value as Json};

use super::error::ApiError;
use crate::db::query::{Filter, Page};

/// Parsed query parameters.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    page: u64,
    per_page: u64,
    order_by: Option<(String, bool)>,
    filters: BTreeMap<String, Vec<String>>,
}

/// Parameters every endpoint ignores (includes and field selection).
fn ignored(key: &str) -> bool {
    key == "include" || key == "label_selector" || key.starts_with("fields[")
}

impl ListParams {
    /// Parses a raw query string; keys outside `allowed` (and the paging
    /// keys) are refused like Cloud Controller does.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut p = Self {
            page: 1,
            per_page: 50,
            ..Default::default()
        };
        let mut unknown = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "page" => p.page = positive(&k, &v, u64::MAX)?,
                "per_page" => p.per_page = positive(&k, &v, 5000)?,
                "order_by" => {
                    let desc = v.starts_with('-');
                    let col = v.trim_start_matches(['-', '+']).to_owned();
                    p.order_by = Some((col, desc));
                }
                key if allowed.contains(&key) => {
                    // `paths=` asks for the empty path: an empty value is one
                    // empty string, not "no filter".
                    let values = if v.is_empty() {
                        vec![String::new()]
                    } else {
                        v.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    };
                    p.filters.insert(key.to_owned(), values);
                }
                key if ignored(key) => {}
                key => unknown.push(format!("'{key}'")),
            }
        }
        if !unknown.is_empty() {
            return Err(ApiError::BadQuery(format!(
                "The query parameter is invalid: Unknown query parameter(s): {}. Valid parameters are: {}",
                unknown.join(", "),
                allowed.join(", ")
            )));
        }
        Ok(p)
    }

    /// Values of one filter.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.filters.get(key).map(Vec::as_slice)
    }

    /// Column filters from `(query key, column)` pairs.
    pub fn filters(&self, mapping: &[(&str, &'static str)]) -> Vec<Filter> {
        mapping
            .iter()
            .filter_map(|(key, column)| {
                self.filters.get(*key).map(|values| Filter {
                    column,
                    values: values.clone(),
                })
            })
            .collect()
    }

    /// The page, with `order_by` resolved against the allowed columns.
    pub fn page(&self, orderable: &[&'static str]) -> Result<Page, ApiError> {
        let mut page = Page {
            page: self.page,
            per_page: self.per_page,
            ..Default::default()
        };
        if let Some((col, desc)) = &self.order_by {
            let column = orderable
                .iter()
                .chain(["created_at", "updated_at"].iter())
                .find(|c| **c == col.as_str())
                .ok_or_else(|| {
                    ApiError::BadQuery(format!(
                        "The query parameter is invalid: Order by can only be: {}",
                        orderable.join(", ")
                    ))
                })?;
            page.order_by = column;
            page.descending = *desc;
        }
        Ok(page)
    }

    /// Builds the paginated response for `path` (e.g. `/v3/apps`).
    pub fn respond(&self, base_url: &str, path: &str, total: u64, resources: Vec<Json>) -> Json {
        let pages = total.div_ceil(self.per_page).max(1);
        let link = |page: u64| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("page", &page.to_string());
            q.append_pair("per_page", &self.per_page.to_string());
            if let Some((col, desc)) = &self.order_by {
                q.append_pair(
                    "order_by",
                    &format!("{}{col}", if *desc { "-" } else { "" }),
                );
            }
            for (k, v) in &self.filters {
                q.append_pair(k, &v.join(","));
            }
            json!({"href": format!("{base_url}{path}?{}", q.finish())})
        };
        json!({
            "pagination": {
                "total_results": total,
                "total_pages": pages,
                "first": link(1),
                "last": link(pages),
                "next": if self.page < pages { link(self.page + 1) } else { Json::Null },
                "previous": if self.page > 1 { link(self.page - 1) } else { Json::Null },
            },
            "resources": resources,
        })
    }
}

fn positive(key: &str, v: &str, max: u64) -> Result<u64, ApiError> {
    match v.parse::<u64>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(ApiError::BadQuery(format!(
            "The query parameter is invalid: {key} must be an integer between 1 and {max}"
        ))),
    }
}

/// An extra SQL condition with its parameters; several are ANDed.
#[derive(Debug, Default)]
pub struct Extra {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Extra {
    /// Adds `column IN (SELECT ... subquery with one ? per value)`-style
    /// conditions built by the caller from trusted SQL.
    pub fn push(&mut self, sql: String, params: Vec<Value>) {
        self.sql.push(sql);
        self.params.extend(params);
    }

    /// `column IN (sub-select over values)`: `template` contains `{}` where the
    /// placeholders go.
    pub fn push_in(&mut self, template: &str, values: &[String]) {
        let marks = if values.is_empty() {
            "NULL".to_owned()
        } else {
            vec!["?"; values.len()].join(",")
        };
        self.sql.push(template.replace("{}", &marks));
        self.params.extend(values.iter().cloned().map(Value::Text));
    }

    /// The combined condition.
    pub fn build(&self) -> Option<(String, Vec<Value>)> {
        (!self.sql.is_empty()).then(|| (self.sql.join(" AND "), self.params.clone()))
    }
}

/// Scopes a listing to one app (`/v3/apps/:guid/<what>`) or to all
/// (`/v3/<what>`): adds the `app_guid` filter and returns the path the
/// pagination links use.
pub fn app_scope(filters: &mut Vec<Filter>, app: Option<&str>, what: &str) -> String {
    match app {
        Some(g) => {
            filters.push(Filter {
                column: "app_guid",
                values: vec![g.to_owned()],
            });
            format!("/v3/apps/{g}/{what}")
        }
        None => format!("/v3/{what}"),
    }
}

/// Runs an app-scoped listing off the async threads: the app must be
/// visible to `p` (404 otherwise), rows are limited to apps `p` may see,
/// and `extra` conditions are ANDed in.
pub async fn list_visible<T, F>(
    s: &super::Shared,
    p: super::Principal,
    app: Option<String>,
    extra: Option<(String, Vec<Value>)>,
    query: F,
) -> super::ApiResult<crate::db::query::Listing<T>>
where
    T: Send + 'static,
    F: FnOnce(
            &rusqlite::Connection,
            Option<(&str, Vec<Value>)>,
        ) -> Result<crate::db::query::Listing<T>, crate::db::DbError>
        + Send
        + 'static,
{
    let s = s.clone();
    super::blocking(move || {
        if let Some(g) = &app {
            super::apps::load_app(&s, &p, g)?;
        }
        let extra = super::and_extra(vec![extra, p.app_filter("app_guid")]);
        Ok(s.db.read_blocking(|c| query(c, super::extra_ref(&extra)))?)
    })
    .await
}
