//! Resource matching, packages and their upload (multipart `resources` +
//! `bits`) and download.

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::apps::load_app;
use super::list::{app_scope, list_visible, ListParams};
use super::{blocking, href, metadata, parse_json, ts, ApiError, ApiResult, Principal, Shared};
use crate::blobstore::BlobKind;
use crate::db::packages::{self, Package};
use crate::packaging::{self, Limits, Resource, MAX_MATCH_ENTRIES};
use crate::states::PackageState;

pub(super) fn routes(upload_limit: usize) -> Router<Shared> {
    Router::new()
        .route("/v3/resource_matches", post(resource_matches))
        .route("/v3/packages", get(list_packages).post(create_package))
        .route("/v3/packages/{guid}", get(get_package))
        .route(
            "/v3/packages/{guid}/upload",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v3/packages/{guid}/download", get(download))
        .route("/v3/apps/{guid}/packages", get(app_packages))
}

/// JSON of a package.
pub fn package_json(b: &str, p: &Package) -> Value {
    let data = if p.kind == "docker" {
        json!({"image": p.docker_image, "username": null, "password": null})
    } else {
        json!({"checksum": {"type": "sha256", "value": p.blob.as_ref().map(|b| &b.sha256)}, "error": p.error})
    };
    json!({
        "guid": p.guid, "type": p.kind, "data": data, "state": p.state,
        "created_at": ts(p.created_at), "updated_at": ts(p.updated_at),
        "relationships": {"app": {"data": {"guid": p.app_guid}}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/packages/{}", p.guid)),
            "upload": {"href": format!("{b}/v3/packages/{}/upload", p.guid), "method": "POST"},
            "download": {"href": format!("{b}/v3/packages/{}/download", p.guid), "method": "GET"},
            "app": href(b, &format!("/v3/apps/{}", p.app_guid)),
        },
    })
}

#[derive(Deserialize)]
struct MatchBody {
    resources: Vec<Resource>,
}

async fn resource_matches(
    State(s): State<Shared>,
    _p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: MatchBody = parse_json(&body)?;
    if body.resources.is_empty() || body.resources.len() > MAX_MATCH_ENTRIES {
        return Err(ApiError::Unprocessable(format!(
            "Resources array must have between 1 and {MAX_MATCH_ENTRIES} resources"
        )));
    }
    let blobs = s.blobs.clone();
    let matched =
        blocking(move || Ok(packaging::match_resources(blobs.as_ref(), &body.resources))).await?;
    Ok((StatusCode::CREATED, Json(json!({"resources": matched}))))
}

/// Loads a package whose app the principal may see. Blocking.
fn load_package(s: &Shared, p: &Principal, guid: &str) -> ApiResult<Package> {
    let pkg =
        s.db.read_blocking(|c| packages::get(c, guid))?
            .ok_or(ApiError::NotFound("Package"))?;
    load_app(s, p, &pkg.app_guid).map_err(|_| ApiError::NotFound("Package"))?;
    Ok(pkg)
}

async fn list(
    s: Shared,
    p: Principal,
    q: Option<String>,
    app_guid: Option<String>,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(
        q.as_deref(),
        &["guids", "app_guids", "states", "types", "space_guids"],
    )?;
    let mut filters = params.filters(&[
        ("guids", "guid"),
        ("app_guids", "app_guid"),
        ("states", "state"),
        ("types", "type"),
    ]);
    let path = app_scope(&mut filters, app_guid.as_deref(), "packages");
    let page = params.page(&[])?;
    let listing = list_visible(&s, p, app_guid, None, move |c, extra| {
        packages::list(c, &filters, extra, &page)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|pk| package_json(&s.base_url, pk))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        &path,
        listing.total,
        items,
    )))
}

async fn list_packages(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, None).await
}

async fn app_packages(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, Some(guid)).await
}

#[derive(Deserialize)]
struct CreatePackage {
    #[serde(rename = "type")]
    kind: String,
    relationships: Value,
    #[serde(default)]
    data: Option<Value>,
}

async fn create_package(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreatePackage = parse_json(&body)?;
    if body.kind != "bits" && body.kind != "docker" {
        return Err(ApiError::Unprocessable(
            "Type must be one of 'bits', 'docker'".into(),
        ));
    }
    let app_guid = body
        .relationships
        .pointer("/app/data/guid")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::Unprocessable("Relationships app is required".into()))?
        .to_owned();
    let image = body
        .data
        .as_ref()
        .and_then(|d| d.get("image"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if body.kind == "docker" && image.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::Unprocessable(
            "Data image required for docker packages".into(),
        ));
    }
    let s2 = s.clone();
    let pkg = blocking(move || {
        let app = load_app(&s2, &p, &app_guid).map_err(|_| {
            ApiError::Unprocessable(
                "App is invalid. Ensure it exists and you have access to it.".into(),
            )
        })?;
        if (app.lifecycle_type == "docker") != (body.kind == "docker") {
            return Err(ApiError::Unprocessable(format!(
                "Cannot create a {} package for a {} app",
                body.kind, app.lifecycle_type
            )));
        }
        Ok(s2
            .db
            .write_blocking(|tx| packages::create(tx, &app.guid, &body.kind, image.as_deref()))?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(package_json(&s.base_url, &pkg))))
}

async fn get_package(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let pkg = blocking(move || load_package(&s2, &p, &guid)).await?;
    Ok(Json(package_json(&s.base_url, &pkg)))
}

/// What a multipart upload carried.
pub(super) struct Upload {
    pub resources: Vec<Resource>,
    pub bits: Option<tempfile::NamedTempFile>,
    pub filename: Option<String>,
}

/// Reads a multipart upload: `resources` (JSON) and `bits` (a file, streamed
/// to a temp file in the blobstore, at most `max_bytes`).
pub(super) async fn read_upload(
    s: &Shared,
    multipart: &mut Multipart,
    max_bytes: u64,
) -> ApiResult<Upload> {
    let mut upload = Upload {
        resources: Vec::new(),
        bits: None,
        filename: None,
    };
    let bad = |e: axum::extract::multipart::MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("The upload exceeds the limit of {max_bytes} bytes"))
        }
        _ => ApiError::MessageParse(format!("invalid multipart body: {}", e.body_text())),
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("resources") => {
                let text = field.bytes().await.map_err(bad)?;
                upload.resources = parse_json(&text)?;
            }
            Some("bits" | "file") => {
                upload.filename = field.file_name().map(str::to_owned);
                let tmp = s.blobs.temp_file()?;
                let mut file = tokio::fs::File::from_std(
                    tmp.reopen()
                        .map_err(|e| ApiError::Internal(e.to_string()))?,
                );
                let mut size = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        return Err(ApiError::TooLarge(format!(
                            "The upload exceeds the limit of {max_bytes} bytes"
                        )));
                    }
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                }
                file.flush()
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                // The CLI may send an empty `bits` part when every file matched.
                upload.bits = (size > 0).then_some(tmp);
            }
            _ => {}
        }
    }
    Ok(upload)
}

async fn upload(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    mut multipart: Multipart,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let g = guid.clone();
    blocking(move || {
        let pkg = load_package(&s2, &p, &g)?;
        if pkg.kind != "bits" {
            return Err(ApiError::Unprocessable(
                "Only bits packages accept an upload".into(),
            ));
        }
        let moved = s2
            .db
            .write_blocking(|tx| packages::transition(tx, &g, PackageState::ProcessingUpload))?;
        if !moved {
            return Err(ApiError::Unprocessable(format!(
                "Package is {}: bits can be uploaded only once",
                pkg.state
            )));
        }
        Ok(())
    })
    .await?;
    let result = async {
        let upload = read_upload(&s, &mut multipart, s.config.limits.max_upload_bytes).await?;
        if upload.bits.is_none() && upload.resources.is_empty() {
            return Err(ApiError::Unprocessable(
                "Upload must include either resources or bits".into(),
            ));
        }
        let s2 = s.clone();
        let g = guid.clone();
        blocking(move || {
            let limits = Limits {
                max_unzipped_bytes: s2.config.limits.max_unzipped_bytes,
                max_entries: s2.config.limits.max_zip_entries,
            };
            let zip = packaging::assemble(
                s2.blobs.as_ref(),
                upload.bits.as_ref().map(|t| t.path()),
                &upload.resources,
                limits,
            )?;
            let blob = s2.blobs.put_temp(BlobKind::Package, zip)?;
            s2.db
                .write_blocking(|tx| packages::set_ready(tx, &g, &blob))?;
            tracing::info!(package_guid = %g, size = blob.size, "package ready");
            Ok(())
        })
        .await
    }
    .await;
    if let Err(e) = &result {
        let (db, g, msg) = (s.db.clone(), guid.clone(), e.to_string());
        blocking(move || Ok(db.write_blocking(|tx| packages::set_failed(tx, &g, &msg))?)).await?;
    }
    result?;
    let db = s.db.clone();
    let pkg = blocking(move || Ok(db.read_blocking(|c| packages::get(c, &guid))?))
        .await?
        .ok_or(ApiError::NotFound("Package"))?;
    Ok(Json(package_json(&s.base_url, &pkg)))
}

/// Streams a local file as the response body.
pub(super) fn stream_file(file: std::fs::File, content_type: &'static str, size: u64) -> Response {
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn download(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let s2 = s.clone();
    let (file, size) = blocking(move || {
        let pkg = load_package(&s2, &p, &guid)?;
        let blob = pkg
            .blob
            .ok_or_else(|| ApiError::Unprocessable("Package has no bits".into()))?;
        Ok((s2.blobs.fetch(BlobKind::Package, &blob)?, blob.size))
    })
    .await?;
    Ok(stream_file(file, "application/zip", size))
}
