//! Routes and their destinations.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::{accepted_job, load_app};
use super::list::{Extra, ListParams};
use super::{
    and_extra, blocking, extra_ref, href, metadata, parse_json, ts, ApiError, ApiResult, Principal,
    Shared,
};
use crate::db::routes::{self as routes_db, Route};
use crate::db::{jobs, orgs};
use crate::lrps;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/routes", get(list_routes).post(create_route))
        .route("/v3/routes/{guid}", get(get_route).delete(delete_route))
        .route(
            "/v3/routes/{guid}/destinations",
            get(get_destinations).post(add_destinations),
        )
        .route(
            "/v3/routes/{guid}/destinations/{dest}",
            delete(remove_destination),
        )
        .route("/v3/apps/{guid}/routes", get(app_routes))
}

/// A route with its domain name and destinations. Blocking.
fn route_json(s: &Shared, r: &Route) -> ApiResult<Value> {
    let b = &s.base_url;
    let domain =
        s.db.read_blocking(|c| orgs::get_domain(c, &r.domain_guid))?
            .map(|d| d.name)
            .unwrap_or_default();
    let dests =
        s.db.read_blocking(|c| routes_db::destinations(c, &r.guid))?;
    let url = if r.host.is_empty() {
        format!("{domain}{}", r.path)
    } else {
        format!("{}.{domain}{}", r.host, r.path)
    };
    let destinations: Vec<Value> = dests
        .iter()
        .map(|d| json!({"guid": d.guid, "app": {"guid": d.app_guid, "process": {"type": d.process_type}}, "weight": null, "port": d.port, "protocol": "http1"}))
        .collect();
    Ok(json!({
        "guid": r.guid, "protocol": "http", "port": null, "host": r.host, "path": r.path, "url": url,
        "created_at": ts(r.created_at), "updated_at": ts(r.updated_at),
        "destinations": destinations,
        "relationships": {"space": {"data": {"guid": r.space_guid}}, "domain": {"data": {"guid": r.domain_guid}}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/routes/{}", r.guid)),
            "space": href(b, &format!("/v3/spaces/{}", r.space_guid)),
            "domain": href(b, &format!("/v3/domains/{}", r.domain_guid)),
            "destinations": href(b, &format!("/v3/routes/{}/destinations", r.guid)),
        },
    }))
}

fn load_route(s: &Shared, p: &Principal, guid: &str) -> ApiResult<Route> {
    let r =
        s.db.read_blocking(|c| routes_db::get(c, guid))?
            .ok_or(ApiError::NotFound("Route"))?;
    if !p.can_use_space(&s.db, &r.space_guid)? {
        return Err(ApiError::NotFound("Route"));
    }
    Ok(r)
}

async fn list(
    s: Shared,
    p: Principal,
    q: Option<String>,
    app: Option<String>,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(
        q.as_deref(),
        &[
            "guids",
            "hosts",
            "paths",
            "domain_guids",
            "space_guids",
            "app_guids",
            "organization_guids",
        ],
    )?;
    let filters = params.filters(&[
        ("guids", "guid"),
        ("hosts", "host"),
        ("paths", "path"),
        ("domain_guids", "domain_guid"),
        ("space_guids", "space_guid"),
    ]);
    let mut by_app = Extra::default();
    let mut app_guids: Vec<String> = params
        .get("app_guids")
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    let path = match &app {
        Some(g) => {
            app_guids = vec![g.clone()];
            format!("/v3/apps/{g}/routes")
        }
        None => "/v3/routes".into(),
    };
    if app.is_some() || params.get("app_guids").is_some() {
        by_app.push_in(
            "guid IN (SELECT route_guid FROM route_destinations WHERE app_guid IN ({}))",
            &app_guids,
        );
    }
    let page = params.page(&["host"])?;
    let s2 = s.clone();
    let items = blocking(move || {
        if let Some(g) = &app {
            load_app(&s2, &p, g)?;
        }
        let extra = and_extra(vec![by_app.build(), p.space_filter("space_guid")]);
        let listing = s2
            .db
            .read_blocking(|c| routes_db::list(c, &filters, extra_ref(&extra), &page))?;
        let items = listing
            .items
            .iter()
            .map(|r| route_json(&s2, r))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok((listing.total, items))
    })
    .await?;
    Ok(Json(params.respond(&s.base_url, &path, items.0, items.1)))
}

async fn list_routes(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, None).await
}

async fn app_routes(
    State(s): State<Shared>,
    p: Principal,
    Path(g): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, Some(g)).await
}

#[derive(Deserialize)]
struct CreateRoute {
    #[serde(default)]
    host: String,
    #[serde(default)]
    path: String,
    relationships: Value,
}

fn valid_host(host: &str) -> bool {
    host.is_empty()
        || (host.len() <= 63
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !host.starts_with('-'))
}

async fn create_route(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateRoute = parse_json(&body)?;
    let rel = |k: &str| {
        body.relationships
            .pointer(&format!("/{k}/data/guid"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let space = rel("space")
        .ok_or_else(|| ApiError::Unprocessable("Relationships space is required".into()))?;
    let domain = rel("domain")
        .ok_or_else(|| ApiError::Unprocessable("Relationships domain is required".into()))?;
    if !valid_host(&body.host) {
        return Err(ApiError::Unprocessable(
            "Host must be a valid DNS label".into(),
        ));
    }
    if !body.path.is_empty()
        && (!body.path.starts_with('/') || body.path == "/" || body.path.contains('?'))
    {
        return Err(ApiError::Unprocessable(
            "Path must begin with / and be more than /".into(),
        ));
    }
    let s2 = s.clone();
    let json = blocking(move || {
        if s2
            .db
            .read_blocking(|c| orgs::get_space(c, &space))?
            .is_none()
            || !p.can_use_space(&s2.db, &space)?
        {
            return Err(ApiError::Unprocessable(
                "Invalid space. Ensure that the space exists and you have access to it.".into(),
            ));
        }
        if s2
            .db
            .read_blocking(|c| orgs::get_domain(c, &domain))?
            .is_none()
        {
            return Err(ApiError::Unprocessable(
                "Invalid domain. Ensure that the domain exists.".into(),
            ));
        }
        let r = s2
            .db
            .write_blocking(|tx| routes_db::create(tx, &body.host, &body.path, &domain, &space))?;
        route_json(&s2, &r)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json)))
}

async fn get_route(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    Ok(Json(
        blocking(move || route_json(&s2, &load_route(&s2, &p, &guid)?)).await?,
    ))
}

/// Re-desires the LRPs of apps whose routes changed. Blocking.
fn resync(s: &Shared, app_guids: &[String]) -> ApiResult<()> {
    for g in app_guids {
        lrps::sync_app(&s.db, s.scheduler.as_ref(), &s.staging, g)?;
    }
    Ok(())
}

async fn delete_route(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let s2 = s.clone();
    let job = blocking(move || {
        let r = load_route(&s2, &p, &guid)?;
        let apps: Vec<String> = s2
            .db
            .read_blocking(|c| routes_db::destinations(c, &r.guid))?
            .into_iter()
            .map(|d| d.app_guid)
            .collect();
        let job = s2.db.write_blocking(|tx| {
            let job = jobs::create(tx, "route.delete", Some(&r.space_guid))?;
            routes_db::delete(tx, &r.guid)?;
            jobs::finish(tx, &job.guid, &[])?;
            Ok(job)
        })?;
        resync(&s2, &apps)?;
        Ok(job)
    })
    .await?;
    Ok(accepted_job(&s, &job.guid))
}

fn destinations_json(s: &Shared, r: &Route) -> ApiResult<Value> {
    let full = route_json(s, r)?;
    Ok(json!({
        "destinations": full["destinations"],
        "links": {"self": href(&s.base_url, &format!("/v3/routes/{}/destinations", r.guid)), "route": href(&s.base_url, &format!("/v3/routes/{}", r.guid))},
    }))
}

async fn get_destinations(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    Ok(Json(
        blocking(move || destinations_json(&s2, &load_route(&s2, &p, &guid)?)).await?,
    ))
}

#[derive(Deserialize)]
struct AddDestinations {
    destinations: Vec<NewDestination>,
}

#[derive(Deserialize)]
struct NewDestination {
    app: DestApp,
    port: Option<i64>,
}

#[derive(Deserialize)]
struct DestApp {
    guid: String,
    process: Option<DestProcess>,
}

#[derive(Deserialize)]
struct DestProcess {
    #[serde(rename = "type")]
    kind: String,
}

async fn add_destinations(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: AddDestinations = parse_json(&body)?;
    let s2 = s.clone();
    let json = blocking(move || {
        let r = load_route(&s2, &p, &guid)?;
        let mut apps = Vec::new();
        for d in &body.destinations {
            let app = load_app(&s2, &p, &d.app.guid).map_err(|_| {
                ApiError::Unprocessable(format!("App {} does not exist", d.app.guid))
            })?;
            if app.space_guid != r.space_guid {
                return Err(ApiError::Unprocessable(
                    "Routes cannot be mapped to destinations in different spaces.".into(),
                ));
            }
            apps.push(app.guid);
        }
        s2.db.write_blocking(|tx| {
            for d in &body.destinations {
                let kind = d.app.process.as_ref().map_or("web", |p| p.kind.as_str());
                routes_db::add_destination(
                    tx,
                    &r.guid,
                    &d.app.guid,
                    kind,
                    d.port.unwrap_or(i64::from(lrps::APP_PORT)),
                )?;
            }
            Ok(())
        })?;
        resync(&s2, &apps)?;
        destinations_json(&s2, &r)
    })
    .await?;
    Ok(Json(json))
}

async fn remove_destination(
    State(s): State<Shared>,
    p: Principal,
    Path((guid, dest)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let s2 = s.clone();
    blocking(move || {
        let r = load_route(&s2, &p, &guid)?;
        let d = s2
            .db
            .read_blocking(|c| routes_db::destinations(c, &r.guid))?
            .into_iter()
            .find(|d| d.guid == dest)
            .ok_or(ApiError::NotFound("Destination"))?;
        s2.db
            .write_blocking(|tx| routes_db::delete_destination(tx, &d.guid))?;
        resync(&s2, &[d.app_guid])
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
