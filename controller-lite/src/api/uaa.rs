//! UAA's endpoints the cf CLI uses: `GET /login` (prompts) and
//! `POST /oauth/token` (password and refresh_token grants, client `cf` with
//! an empty secret over Basic auth).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde_json::json;

use super::{blocking, Shared};
use crate::auth::{verify_password, TokenPair};
use crate::db::users;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/login", get(login_info))
        .route("/oauth/token", post(token))
}

async fn login_info(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({
        "app": {"version": env!("CARGO_PKG_VERSION")},
        "links": {"uaa": s.base_url, "login": s.base_url},
        "zone_name": "uaa",
        "prompts": {"username": ["text", "Email"], "password": ["password", "Password"]},
    }))
}

/// An OAuth error in UAA's shape.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// The client id and secret from Basic auth or the form.
fn client(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    let id = form.get("client_id")?;
    Some((
        id.clone(),
        form.get("client_secret").cloned().unwrap_or_default(),
    ))
}

fn token_response(pair: TokenPair) -> Response {
    Json(json!({
        "access_token": pair.access_token,
        "token_type": "bearer",
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
        "scope": pair.scope.join(" "),
        "jti": pair.jti,
    }))
    .into_response()
}

async fn token(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    match client(&headers, &form) {
        Some((id, secret)) if id == "cf" && secret.is_empty() => {}
        _ => return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials"),
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let result = match grant {
        "password" => password_grant(&s, &form).await,
        "refresh_token" => refresh_grant(&s, &form).await,
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            )
        }
    };
    match result {
        Ok(pair) => token_response(pair),
        Err(resp) => resp,
    }
}

async fn password_grant(s: &Shared, form: &HashMap<String, String>) -> Result<TokenPair, Response> {
    let bad = || oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials");
    let (Some(name), Some(password)) =
        (form.get("username").cloned(), form.get("password").cloned())
    else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username and password are required",
        ));
    };
    let db = s.db.clone();
    let user = blocking(move || {
        let user = db.read_blocking(|c| users::by_name(c, &name))?;
        Ok(user.filter(|u| verify_password(&password, &u.password_hash)))
    })
    .await
    .map_err(|_| bad())?
    .ok_or_else(bad)?;
    tracing::info!(user = %user.name, "token issued (password)");
    s.tokens.issue(&user, "password").map_err(|_| bad())
}

async fn refresh_grant(s: &Shared, form: &HashMap<String, String>) -> Result<TokenPair, Response> {
    let invalid = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid refresh token",
        )
    };
    let token = form.get("refresh_token").ok_or_else(invalid)?;
    let claims = s.tokens.verify_refresh(token).map_err(|_| invalid())?;
    let db = s.db.clone();
    let user = blocking(move || Ok(db.read_blocking(|c| users::by_guid(c, &claims.user_id))?))
        .await
        .map_err(|_| invalid())?
        .ok_or_else(invalid)?;
    s.tokens
        .issue(&user, "refresh_token")
        .map_err(|_| invalid())
}
