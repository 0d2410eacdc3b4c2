//! `/`, `/v3` and `/v3/info`: what `cf api` reads.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{href, Shared};

/// The v3 API version we announce (the CLI needs ≥ 3.99.0).
pub const API_VERSION: &str = "3.180.0";

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(root))
        .route("/v3", get(v3))
        .route("/v3/", get(v3))
        .route("/v3/info", get(info))
}

async fn root(State(s): State<Shared>) -> Json<Value> {
    let b = &s.base_url;
    Json(json!({
        "links": {
            "self": href(b, ""),
            "bits_service": null,
            "cloud_controller_v2": null,
            "cloud_controller_v3": {"href": format!("{b}/v3"), "meta": {"version": API_VERSION}},
            "network_policy_v0": null,
            "network_policy_v1": null,
            "login": href(b, ""),
            "uaa": href(b, ""),
            "credhub": null,
            "routing": null,
            "logging": null,
            "log_cache": href(b, ""),
            "log_stream": null,
            "app_ssh": null,
        }
    }))
}

async fn v3(State(s): State<Shared>) -> Json<Value> {
    let b = &s.base_url;
    let mut links = serde_json::Map::new();
    links.insert("self".into(), href(b, "/v3"));
    for r in [
        "apps",
        "builds",
        "buildpacks",
        "domains",
        "droplets",
        "organizations",
        "packages",
        "processes",
        "resource_matches",
        "routes",
        "spaces",
        "stacks",
        "tasks",
    ] {
        links.insert(r.into(), href(b, &format!("/v3/{r}")));
    }
    Json(json!({"links": links}))
}

async fn info(State(s): State<Shared>) -> Json<Value> {
    Json(json!({
        "build": env!("CARGO_PKG_VERSION"),
        "cli_version": {"minimum": "8.0.0", "recommended": "8.0.0"},
        "custom": {},
        "description": "controller-lite: a small Cloud Foundry-style controller",
        "name": "controller-lite",
        "version": 3,
        "osbapi_version": "",
        "links": {"self": href(&s.base_url, "/v3/info"), "support": null},
    }))
}
