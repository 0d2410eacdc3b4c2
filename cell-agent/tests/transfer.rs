//! Download and Upload steps against an HTTP server on 127.0.0.1.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use common::{request, sh, Cell};
use diego::models::action::{Action, DownloadAction, Steps, UploadAction};
use sha2::{Digest, Sha256};

const LONG: Duration = Duration::from_secs(60);

/// (file name, bytes) of every upload.
type Uploads = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Server {
    tgz: Arc<Vec<u8>>,
    zip: Arc<Vec<u8>>,
    tgz_gets: Arc<AtomicUsize>,
    uploads: Uploads,
}

fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, body.as_bytes())
            .expect("append");
    }
    tar.into_inner().expect("tar").finish().expect("gz")
}

fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, body) in files {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.write_all(body.as_bytes()).expect("write");
    }
    zip.finish().expect("finish");
    out.into_inner()
}

async fn serve(server: Server) -> String {
    let app = Router::new()
        .route(
            "/app.tgz",
            get(|State(s): State<Server>| async move {
                s.tgz_gets.fetch_add(1, Ordering::SeqCst);
                s.tgz.to_vec()
            }),
        )
        .route(
            "/app.zip",
            get(|State(s): State<Server>| async move { s.zip.to_vec() }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/upload",
            post(|State(s): State<Server>, mut form: Multipart| async move {
                while let Ok(Some(field)) = form.next_field().await {
                    let name = field.file_name().unwrap_or_default().to_owned();
                    let bytes = field.bytes().await.map_err(|_| StatusCode::BAD_REQUEST)?;
                    s.uploads
                        .lock()
                        .expect("uploads")
                        .push((name, bytes.to_vec()));
                }
                Ok::<_, StatusCode>("stored")
            }),
        )
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn download(from: String, to: &str, key: &str, algorithm: &str, digest: &str) -> Action {
    Action::Download(DownloadAction {
        artifact: "app".into(),
        from,
        to: to.into(),
        cache_key: key.into(),
        checksum_algorithm: algorithm.into(),
        checksum_value: digest.into(),
        ..DownloadAction::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_check_digests_use_the_cache_and_uploads_post_the_file() {
    let mut cell = Cell::start();
    let server = Server {
        tgz: Arc::new(tgz(&[("hello.txt", "hello from tgz\n")])),
        zip: Arc::new(zip(&[("bin/zipped.txt", "hello from zip\n")])),
        ..Server::default()
    };
    let base = serve(server.clone()).await;
    let sha256 = hex::encode(Sha256::digest(server.tgz.as_slice()));
    let sha1 = hex::encode(sha1::Sha1::digest(server.zip.as_slice()));

    // Good digests, tgz and zip; then an upload of a file the task wrote.
    let first = common::guid("dl");
    let action = Action::Serial(Steps {
        actions: vec![
            download(format!("{base}/app.tgz"), "/home/app", "app-v1", "sha256", &sha256),
            download(format!("{base}/app.zip"), "/home/zip", "", "sha1", &sha1),
            sh("cat /home/app/hello.txt /home/zip/bin/zipped.txt; echo uploaded-bytes > /tmp/out.txt"),
            Action::Upload(UploadAction {
                artifact: "out".into(),
                from: "/tmp/out.txt".into(),
                to: format!("{base}/upload"),
                ..UploadAction::default()
            }),
        ],
    });
    cell.start_container(&first, request(action));
    let done = cell.completed(&first, LONG).await;
    let result = done.result.expect("result");
    assert!(!result.failed, "{result:?}");
    let logs = cell.log_messages();
    for expected in [
        "Downloading app...",
        "hello from tgz",
        "hello from zip",
        "Uploading out...",
        "Uploaded out (15B)",
    ] {
        assert!(
            logs.iter().any(|l| l == expected),
            "{expected:?} in {logs:?}"
        );
    }
    assert_eq!(
        server.uploads.lock().expect("uploads").clone(),
        [("out.txt".to_string(), b"uploaded-bytes\n".to_vec())]
    );
    assert_eq!(server.tgz_gets.load(Ordering::SeqCst), 1);
    assert_eq!(cell.executor.cached_downloads(), ["app-v1"]);
    assert_eq!(
        cell.executor.download_cache_bytes(),
        server.tgz.len() as u64
    );

    // The same cache key again: no request.
    let second = common::guid("dl");
    let action = Action::Serial(Steps {
        actions: vec![
            download(
                format!("{base}/app.tgz"),
                "/home/app",
                "app-v1",
                "sha256",
                &sha256,
            ),
            sh("cat /home/app/hello.txt"),
        ],
    });
    cell.start_container(&second, request(action));
    let done = cell.completed(&second, LONG).await;
    assert!(!done.result.expect("result").failed);
    assert_eq!(server.tgz_gets.load(Ordering::SeqCst), 1, "cache hit");

    // A wrong digest (not cached under another key) and a 404 fail clearly.
    let bad = common::guid("dl");
    let wrong = "0".repeat(64);
    cell.start_container(
        &bad,
        request(download(
            format!("{base}/app.tgz"),
            "/home/app",
            "",
            "sha256",
            &wrong,
        )),
    );
    let done = cell.completed(&bad, LONG).await;
    let reason = done.result.expect("result").failure_reason;
    assert_eq!(
        reason,
        format!("checksum mismatch for {base}/app.tgz: expected sha256 {wrong}, got {sha256}")
    );
    let missing = common::guid("dl");
    cell.start_container(
        &missing,
        request(download(format!("{base}/missing"), "/home/app", "", "", "")),
    );
    let done = cell.completed(&missing, LONG).await;
    assert_eq!(
        done.result.expect("result").failure_reason,
        format!("downloading {base}/missing: server answered 404")
    );
    for g in [first, second, bad, missing] {
        cell.executor.delete(&g).await.expect("delete");
    }
}
