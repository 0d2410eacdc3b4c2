//! Processes: read, update, scale and per-instance stats.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::load_app;
use super::list::ListParams;
use super::{
    and_extra, blocking, extra_ref, href, metadata, parse_json, ts, ApiError, ApiResult, Principal,
    Shared,
};
use crate::db::apps::{self, Process};
use crate::db::query::Filter;
use crate::db::scheduler::ActualLrp;
use crate::lrps;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/processes", get(list_processes))
        .route(
            "/v3/processes/{guid}",
            get(get_process).patch(update_process),
        )
        .route("/v3/processes/{guid}/actions/scale", post(scale))
        .route("/v3/processes/{guid}/stats", get(stats))
        .route("/v3/apps/{guid}/processes", get(app_processes))
        .route("/v3/apps/{guid}/processes/{kind}", get(app_process))
        .route(
            "/v3/apps/{guid}/processes/{kind}/actions/scale",
            post(app_scale),
        )
        .route("/v3/apps/{guid}/processes/{kind}/stats", get(app_stats))
}

fn process_json(b: &str, p: &Process, space_guid: &str) -> Value {
    let mut data = json!({"timeout": p.health_check_timeout, "invocation_timeout": p.health_check_invocation_timeout});
    if p.health_check_type == "http" {
        data["endpoint"] = json!(p
            .health_check_endpoint
            .clone()
            .unwrap_or_else(|| "/".into()));
    }
    json!({
        "guid": p.guid, "type": p.kind, "command": p.command, "instances": p.instances,
        "memory_in_mb": p.memory_in_mb, "disk_in_mb": p.disk_in_mb, "log_rate_limit_in_bytes_per_second": -1,
        "health_check": {"type": p.health_check_type, "data": data},
        "readiness_health_check": {"type": "process", "data": {"invocation_timeout": null}},
        "relationships": {"app": {"data": {"guid": p.app_guid}}, "revision": null},
        "metadata": metadata(),
        "created_at": ts(p.created_at), "updated_at": ts(p.updated_at), "version": p.version,
        "links": {
            "self": href(b, &format!("/v3/processes/{}", p.guid)),
            "scale": {"href": format!("{b}/v3/processes/{}/actions/scale", p.guid), "method": "POST"},
            "app": href(b, &format!("/v3/apps/{}", p.app_guid)),
            "space": href(b, &format!("/v3/spaces/{space_guid}")),
            "stats": href(b, &format!("/v3/processes/{}/stats", p.guid)),
        },
    })
}

/// A process by guid, or by app and type, with its app's space. Blocking.
fn load(
    s: &Shared,
    p: &Principal,
    guid: &str,
    kind: Option<&str>,
) -> ApiResult<(Process, apps::App)> {
    let process = match kind {
        None => s.db.read_blocking(|c| apps::get_process(c, guid))?,
        Some(k) => {
            load_app(s, p, guid)?;
            s.db.read_blocking(|c| apps::process_by_type(c, guid, k))?
        }
    }
    .ok_or(ApiError::NotFound("Process"))?;
    let app = load_app(s, p, &process.app_guid).map_err(|_| ApiError::NotFound("Process"))?;
    Ok((process, app))
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
            "types",
            "app_guids",
            "space_guids",
            "organization_guids",
        ],
    )?;
    let mut filters = params.filters(&[
        ("guids", "guid"),
        ("types", "type"),
        ("app_guids", "app_guid"),
    ]);
    let path = match &app {
        Some(g) => {
            filters.push(Filter {
                column: "app_guid",
                values: vec![g.clone()],
            });
            format!("/v3/apps/{g}/processes")
        }
        None => "/v3/processes".into(),
    };
    let mut spaces = super::list::Extra::default();
    if let Some(sg) = params.get("space_guids") {
        spaces.push_in(
            "app_guid IN (SELECT guid FROM apps WHERE space_guid IN ({}))",
            sg,
        );
    }
    let page = params.page(&[])?;
    let s2 = s.clone();
    let (listing, space_of) = blocking(move || {
        if let Some(g) = &app {
            load_app(&s2, &p, g)?;
        }
        let extra = and_extra(vec![spaces.build(), p.app_filter("app_guid")]);
        let listing = s2
            .db
            .read_blocking(|c| apps::list_processes(c, &filters, extra_ref(&extra), &page))?;
        let mut space_of = Vec::new();
        for pr in &listing.items {
            let a = s2.db.read_blocking(|c| apps::get_app(c, &pr.app_guid))?;
            space_of.push(a.map(|a| a.space_guid).unwrap_or_default());
        }
        Ok((listing, space_of))
    })
    .await?;
    let items = listing
        .items
        .iter()
        .zip(&space_of)
        .map(|(pr, sp)| process_json(&s.base_url, pr, sp))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        &path,
        listing.total,
        items,
    )))
}

async fn list_processes(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, None).await
}

async fn app_processes(
    State(s): State<Shared>,
    p: Principal,
    Path(g): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, Some(g)).await
}

async fn get_process(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let (pr, app) = blocking(move || load(&s2, &p, &guid, None)).await?;
    Ok(Json(process_json(&s.base_url, &pr, &app.space_guid)))
}

async fn app_process(
    State(s): State<Shared>,
    p: Principal,
    Path((g, kind)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let (pr, app) = blocking(move || load(&s2, &p, &g, Some(&kind))).await?;
    Ok(Json(process_json(&s.base_url, &pr, &app.space_guid)))
}

#[derive(Deserialize)]
struct UpdateProcess {
    command: Option<Option<String>>,
    health_check: Option<HealthCheckBody>,
}

#[derive(Deserialize)]
struct HealthCheckBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Value>,
}

async fn update_process(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: UpdateProcess = parse_json(&body)?;
    let s2 = s.clone();
    let (pr, app) = blocking(move || {
        let (mut pr, app) = load(&s2, &p, &guid, None)?;
        if let Some(c) = body.command {
            pr.command = c;
        }
        if let Some(hc) = body.health_check {
            if !matches!(hc.kind.as_str(), "port" | "http" | "process") {
                return Err(ApiError::Unprocessable(
                    "Health check type must be port, http or process".into(),
                ));
            }
            pr.health_check_type = hc.kind;
            let data = hc.data.unwrap_or(Value::Null);
            pr.health_check_endpoint = data
                .get("endpoint")
                .and_then(Value::as_str)
                .map(str::to_owned);
            pr.health_check_timeout = data.get("timeout").and_then(Value::as_i64);
            pr.health_check_invocation_timeout =
                data.get("invocation_timeout").and_then(Value::as_i64);
        }
        let p2 = pr.clone();
        s2.db.write_blocking(|tx| apps::update_process(tx, &p2))?;
        Ok((pr, app))
    })
    .await?;
    Ok(Json(process_json(&s.base_url, &pr, &app.space_guid)))
}

#[derive(Deserialize)]
struct ScaleBody {
    instances: Option<i64>,
    memory_in_mb: Option<i64>,
    disk_in_mb: Option<i64>,
}

async fn do_scale(
    s: Shared,
    p: Principal,
    guid: String,
    kind: Option<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: ScaleBody = parse_json(&body)?;
    if body.instances.is_some_and(|n| !(0..=2000).contains(&n)) {
        return Err(ApiError::Unprocessable(
            "Instances must be between 0 and 2000".into(),
        ));
    }
    if body.memory_in_mb.is_some_and(|m| m < 1) || body.disk_in_mb.is_some_and(|d| d < 1) {
        return Err(ApiError::Unprocessable(
            "Memory and disk must be greater than 0MB".into(),
        ));
    }
    let s2 = s.clone();
    let (pr, app) = blocking(move || {
        let (mut pr, app) = load(&s2, &p, &guid, kind.as_deref())?;
        let resized = body.memory_in_mb.is_some_and(|m| m != pr.memory_in_mb)
            || body.disk_in_mb.is_some_and(|d| d != pr.disk_in_mb);
        pr.instances = body.instances.unwrap_or(pr.instances);
        pr.memory_in_mb = body.memory_in_mb.unwrap_or(pr.memory_in_mb);
        pr.disk_in_mb = body.disk_in_mb.unwrap_or(pr.disk_in_mb);
        if resized {
            pr.version = crate::db::new_guid();
        }
        let p2 = pr.clone();
        s2.db.write_blocking(|tx| apps::update_process(tx, &p2))?;
        lrps::sync_app(&s2.db, s2.scheduler.as_ref(), &s2.staging, &app.guid)?;
        Ok((pr, app))
    })
    .await?;
    Ok(Json(process_json(&s.base_url, &pr, &app.space_guid)))
}

async fn scale(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    do_scale(s, p, guid, None, body).await
}

async fn app_scale(
    State(s): State<Shared>,
    p: Principal,
    Path((g, k)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    do_scale(s, p, g, Some(k), body).await
}

/// The stats rows of a process: one per desired index (its first record),
/// then the records of a rolling restart's new version that does not serve
/// yet (or of indices being stopped), with `details` saying which.
fn stats_resources(pr: &Process, running: bool, actuals: &[ActualLrp], now: i64) -> Vec<Value> {
    let row = |index: i64, actual: Option<&ActualLrp>, details: Option<String>| {
        let state = match actual.map(|a| a.state.as_str()) {
            Some("RUNNING") => "RUNNING",
            Some("CRASHED") => "CRASHED",
            Some(_) => "STARTING",
            None if running => "STARTING",
            None => "DOWN",
        };
        let ports = actual
            .and_then(|a| a.port)
            .map(|port| vec![json!({"external": port, "internal": lrps::APP_PORT, "external_tls_proxy_port": null, "internal_tls_proxy_port": null})])
            .unwrap_or_default();
        json!({
            "type": pr.kind, "index": index, "state": state,
            "host": actual.map(|a| a.host.clone()).unwrap_or_default(),
            "instance_ports": ports,
            "uptime": actual.filter(|a| a.state == "RUNNING").map(|a| (now - a.since).max(0)).unwrap_or(0),
            "mem_quota": pr.memory_in_mb * 1024 * 1024, "disk_quota": pr.disk_in_mb * 1024 * 1024,
            "fds_quota": 16384, "isolation_segment": null, "details": details,
            "usage": {
                "time": crate::api::ts(now),
                "cpu": actual.map(|a| a.cpu).unwrap_or(0.0),
                "mem": actual.map(|a| a.mem).unwrap_or(0),
                "disk": actual.map(|a| a.disk).unwrap_or(0),
                "log_rate": 0,
            },
        })
    };
    let mut shown = vec![false; actuals.len()];
    let mut resources: Vec<Value> = (0..pr.instances.max(0))
        .map(|index| {
            let found = actuals.iter().position(|a| a.index == index);
            if let Some(i) = found {
                shown[i] = true;
            }
            row(index, found.map(|i| &actuals[i]), None)
        })
        .collect();
    // A rolling restart's new version that is not serving yet (starting,
    // or crashing) shows beside the instances that serve.
    for (a, _) in actuals.iter().zip(&shown).filter(|(_, shown)| !**shown) {
        let details = if a.process_guid == pr.guid {
            "stopping".to_owned()
        } else {
            format!("new version {} rolling out", a.process_guid)
        };
        resources.push(row(a.index, Some(a), Some(details)));
    }
    resources
}

async fn do_stats(
    s: Shared,
    p: Principal,
    guid: String,
    kind: Option<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let (pr, app, actuals) = blocking(move || {
        let (pr, app) = load(&s2, &p, &guid, kind.as_deref())?;
        let actuals = s2.scheduler.actual_lrps(&pr.guid)?;
        Ok((pr, app, actuals))
    })
    .await?;
    let now = crate::db::now();
    let running = app.state == "STARTED" && app.droplet_guid.is_some();
    let resources = stats_resources(&pr, running, &actuals, now);
    Ok(Json(json!({"resources": resources})))
}

async fn stats(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    do_stats(s, p, guid, None).await
}

async fn app_stats(
    State(s): State<Shared>,
    p: Principal,
    Path((g, k)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    do_stats(s, p, g, Some(k)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actual(pg: &str, index: i64, state: &str) -> ActualLrp {
        ActualLrp {
            process_guid: pg.into(),
            index,
            state: state.into(),
            host: "10.0.0.1".into(),
            port: Some(61001),
            since: 100,
            cpu: 0.0,
            mem: 0,
            disk: 0,
        }
    }

    #[test]
    fn a_crashing_new_version_shows_beside_the_serving_instances() {
        let pr = Process {
            guid: "web".into(),
            app_guid: "app".into(),
            kind: "web".into(),
            command: None,
            instances: 2,
            memory_in_mb: 64,
            disk_in_mb: 64,
            health_check_type: "port".into(),
            health_check_endpoint: None,
            health_check_timeout: None,
            health_check_invocation_timeout: None,
            version: "v2".into(),
            created_at: 0,
            updated_at: 0,
        };
        let actuals = [
            actual("web", 0, "RUNNING"),
            actual("web", 1, "RUNNING"),
            actual("web-v2", 0, "CRASHED"),
        ];
        let rows = stats_resources(&pr, true, &actuals, 160);
        let shown: Vec<(i64, &str, Option<&str>)> = rows
            .iter()
            .map(|r| {
                (
                    r["index"].as_i64().unwrap_or(-1),
                    r["state"].as_str().unwrap_or(""),
                    r["details"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (0, "RUNNING", None),
                (1, "RUNNING", None),
                (0, "CRASHED", Some("new version web-v2 rolling out")),
            ]
        );
        assert_eq!(rows[0]["uptime"], 60);
        let idle = stats_resources(&pr, false, &[], 160);
        assert!(idle.iter().all(|r| r["state"] == "DOWN"), "{idle:?}");
    }
}
