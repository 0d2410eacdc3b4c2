//! Organizations, spaces, stacks and domains.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::list::ListParams;
use super::{
    blocking, extra_ref, href, metadata, parse_json, ts, ApiError, ApiResult, Principal, Shared,
};
use crate::db::orgs::{self, Domain, Org, Space, Stack};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/organizations", get(list_orgs).post(create_org))
        .route("/v3/organizations/{guid}", get(get_org))
        .route(
            "/v3/organizations/{guid}/domains/default",
            get(default_domain),
        )
        .route("/v3/spaces", get(list_spaces).post(create_space))
        .route("/v3/spaces/{guid}", get(get_space))
        .route("/v3/stacks", get(list_stacks).post(create_stack))
        .route("/v3/stacks/{guid}", get(get_stack))
        .route("/v3/domains", get(list_domains))
        .route("/v3/domains/{guid}", get(get_domain))
}

/// JSON of an organization.
pub fn org_json(b: &str, o: &Org) -> Value {
    json!({
        "guid": o.guid, "created_at": ts(o.created_at), "updated_at": ts(o.updated_at),
        "name": o.name, "suspended": false,
        "relationships": {"quota": {"data": null}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/organizations/{}", o.guid)),
            "domains": href(b, &format!("/v3/organizations/{}/domains", o.guid)),
            "default_domain": href(b, &format!("/v3/organizations/{}/domains/default", o.guid)),
        },
    })
}

/// JSON of a space.
pub fn space_json(b: &str, s: &Space) -> Value {
    json!({
        "guid": s.guid, "created_at": ts(s.created_at), "updated_at": ts(s.updated_at), "name": s.name,
        "relationships": {"organization": {"data": {"guid": s.org_guid}}, "quota": {"data": null}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/spaces/{}", s.guid)),
            "organization": href(b, &format!("/v3/organizations/{}", s.org_guid)),
            "apply_manifest": {"href": format!("{b}/v3/spaces/{}/actions/apply_manifest", s.guid), "method": "POST"},
        },
    })
}

fn stack_json(b: &str, s: &Stack) -> Value {
    json!({
        "guid": s.guid, "created_at": ts(s.created_at), "updated_at": ts(s.updated_at),
        "name": s.name, "description": s.description,
        "run_rootfs_image": s.name, "build_rootfs_image": s.name, "default": s.is_default,
        "metadata": metadata(),
        "links": {"self": href(b, &format!("/v3/stacks/{}", s.guid))},
    })
}

/// JSON of a domain.
pub fn domain_json(b: &str, d: &Domain) -> Value {
    json!({
        "guid": d.guid, "created_at": ts(d.created_at), "updated_at": ts(d.updated_at), "name": d.name,
        "internal": d.internal, "router_group": null, "supported_protocols": ["http"],
        "relationships": {"organization": {"data": null}, "shared_organizations": {"data": []}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/domains/{}", d.guid)),
            "route_reservations": href(b, &format!("/v3/domains/{}/route_reservations", d.guid)),
        },
    })
}

async fn list_orgs(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(q.as_deref(), &["names", "guids"])?;
    let filters = params.filters(&[("names", "name"), ("guids", "guid")]);
    let page = params.page(&["name"])?;
    let extra = p.space_filter("guid").map(|_| {
        (
            "guid IN (SELECT org_guid FROM spaces WHERE guid IN (SELECT space_guid FROM space_roles WHERE user_guid = ?))".to_owned(),
            vec![rusqlite::types::Value::Text(p.user_guid.clone())],
        )
    });
    let db = s.db.clone();
    let listing = blocking(move || {
        Ok(db.read_blocking(|c| orgs::list_orgs(c, &filters, extra_ref(&extra), &page))?)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|o| org_json(&s.base_url, o))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        "/v3/organizations",
        listing.total,
        items,
    )))
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
    #[serde(default)]
    relationships: Option<Value>,
    #[serde(default)]
    description: Option<String>,
}

fn valid_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 255 {
        return Err(ApiError::Unprocessable(
            "Name must be between 1 and 255 characters".into(),
        ));
    }
    Ok(())
}

async fn create_org(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require_admin()?;
    let body: NameBody = parse_json(&body)?;
    valid_name(&body.name)?;
    let db = s.db.clone();
    let org =
        blocking(move || Ok(db.write_blocking(|tx| orgs::create_org(tx, &body.name))?)).await?;
    Ok((StatusCode::CREATED, Json(org_json(&s.base_url, &org))))
}

async fn get_org(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let user = p.user_guid.clone();
    let admin = p.admin;
    let org = blocking(move || {
        let org = db.read_blocking(|c| orgs::get_org(c, &guid))?;
        let visible = admin
            || db.read_blocking(|c| {
                let n: i64 = c.query_row(
                    "SELECT COUNT(*) FROM space_roles r JOIN spaces sp ON sp.guid = r.space_guid WHERE sp.org_guid = ? AND r.user_guid = ?",
                    [&guid, &user],
                    |r| r.get(0),
                )?;
                Ok(n > 0)
            })?;
        Ok(org.filter(|_| visible))
    })
    .await?
    .ok_or(ApiError::NotFound("Organization"))?;
    Ok(Json(org_json(&s.base_url, &org)))
}

async fn default_domain(
    State(s): State<Shared>,
    _p: Principal,
    Path(_guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let name = s.config.apps_domain.clone();
    let d = blocking(move || Ok(db.read_blocking(|c| orgs::domain_by_name(c, &name))?))
        .await?
        .ok_or(ApiError::NotFound("Domain"))?;
    Ok(Json(domain_json(&s.base_url, &d)))
}

async fn list_spaces(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(q.as_deref(), &["names", "guids", "organization_guids"])?;
    let filters = params.filters(&[
        ("names", "name"),
        ("guids", "guid"),
        ("organization_guids", "org_guid"),
    ]);
    let page = params.page(&["name"])?;
    let extra = p.space_filter("guid");
    let db = s.db.clone();
    let listing = blocking(move || {
        Ok(db.read_blocking(|c| orgs::list_spaces(c, &filters, extra_ref(&extra), &page))?)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|sp| space_json(&s.base_url, sp))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        "/v3/spaces",
        listing.total,
        items,
    )))
}

async fn create_space(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require_admin()?;
    let body: NameBody = parse_json(&body)?;
    valid_name(&body.name)?;
    let org_guid = body
        .relationships
        .as_ref()
        .and_then(|r| r.pointer("/organization/data/guid"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::Unprocessable("Relationships organization is required".into()))?
        .to_owned();
    let db = s.db.clone();
    let space = blocking(move || {
        if db.read_blocking(|c| orgs::get_org(c, &org_guid))?.is_none() {
            return Err(ApiError::Unprocessable(
                "Invalid organization. Ensure the organization exists.".into(),
            ));
        }
        Ok(db.write_blocking(|tx| orgs::create_space(tx, &org_guid, &body.name))?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(space_json(&s.base_url, &space))))
}

async fn get_space(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let space = blocking(move || {
        let space = db.read_blocking(|c| orgs::get_space(c, &guid))?;
        match space {
            Some(sp) if p.can_use_space(&db, &sp.guid)? => Ok(Some(sp)),
            _ => Ok(None),
        }
    })
    .await?
    .ok_or(ApiError::NotFound("Space"))?;
    Ok(Json(space_json(&s.base_url, &space)))
}

async fn list_stacks(
    State(s): State<Shared>,
    _p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(q.as_deref(), &["names", "guids", "default"])?;
    let filters = params.filters(&[("names", "name"), ("guids", "guid")]);
    let page = params.page(&["name"])?;
    let db = s.db.clone();
    let listing =
        blocking(move || Ok(db.read_blocking(|c| orgs::list_stacks(c, &filters, &page))?)).await?;
    let items = listing
        .items
        .iter()
        .map(|st| stack_json(&s.base_url, st))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        "/v3/stacks",
        listing.total,
        items,
    )))
}

async fn create_stack(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require_admin()?;
    let body: NameBody = parse_json(&body)?;
    valid_name(&body.name)?;
    let db = s.db.clone();
    let stack = blocking(move || {
        Ok(db.write_blocking(|tx| {
            orgs::create_stack(
                tx,
                &body.name,
                body.description.as_deref().unwrap_or(""),
                false,
            )
        })?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(stack_json(&s.base_url, &stack))))
}

async fn get_stack(
    State(s): State<Shared>,
    _p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let stack = blocking(move || Ok(db.read_blocking(|c| orgs::get_stack(c, &guid))?))
        .await?
        .ok_or(ApiError::NotFound("Stack"))?;
    Ok(Json(stack_json(&s.base_url, &stack)))
}

async fn list_domains(
    State(s): State<Shared>,
    _p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(q.as_deref(), &["names", "guids", "organization_guids"])?;
    let filters = params.filters(&[("names", "name"), ("guids", "guid")]);
    let page = params.page(&["name"])?;
    let db = s.db.clone();
    let listing =
        blocking(move || Ok(db.read_blocking(|c| orgs::list_domains(c, &filters, &page))?)).await?;
    let items = listing
        .items
        .iter()
        .map(|d| domain_json(&s.base_url, d))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        "/v3/domains",
        listing.total,
        items,
    )))
}

async fn get_domain(
    State(s): State<Shared>,
    _p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let d = blocking(move || Ok(db.read_blocking(|c| orgs::get_domain(c, &guid))?))
        .await?
        .ok_or(ApiError::NotFound("Domain"))?;
    Ok(Json(domain_json(&s.base_url, &d)))
}
