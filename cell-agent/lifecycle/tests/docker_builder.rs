//! The real `lifecycle-docker-builder` against Debian's `docker-registry`
//! on loopback (plain HTTP, so on the insecure list), holding images this
//! test pushes: a Docker schema 2 manifest, an OCI index whose linux/amd64
//! entry must be picked, and names that do not exist.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use garden_image::digest::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-docker-builder");
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const REPO: &str = "lifecycle/app";

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `docker-registry` over its own storage; killed on drop.
struct Registry {
    child: Child,
    host: String,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry (scripts/deps.sh)"
        );
        let host = format!("127.0.0.1:{}", free_port());
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).expect("storage");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
                storage.display()
            ),
        )
        .expect("config");
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let mut r = Registry { child, host, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.host).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", r.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes blobs and manifests over the registry's HTTP API.
struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    fn new(host: &str) -> Pusher {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Pusher {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .build()
                .expect("client"),
            base: format!("http://{host}"),
        }
    }

    async fn blob(&self, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        let resp = self
            .http
            .post(format!("{}/v2/{REPO}/blobs/uploads/", self.base))
            .send()
            .await
            .expect("start upload");
        assert_eq!(resp.status(), 202, "start upload");
        let location = resp.headers()["location"].to_str().expect("location");
        let mut url = reqwest::Url::parse(&self.base)
            .expect("base")
            .join(location)
            .expect("upload url");
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .http
            .put(url)
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status(), 201, "upload blob");
        digest
    }

    async fn manifest(&self, tag: &str, media_type: &str, body: &serde_json::Value) -> Descriptor {
        let bytes = serde_json::to_vec(body).expect("json");
        let resp = self
            .http
            .put(format!("{}/v2/{REPO}/manifests/{tag}", self.base))
            .header("Content-Type", media_type)
            .body(bytes.clone())
            .send()
            .await
            .expect("put manifest");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "put manifest {tag}: {text}");
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::sha256(&bytes),
            size: bytes.len(),
        }
    }
}

struct Descriptor {
    media_type: String,
    digest: Digest,
    size: usize,
}

impl Descriptor {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.size})
    }
}

/// One gzipped layer holding `/hello`.
fn layer() -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(6);
    tar.append_data(&mut h, "hello", &b"hello\n"[..])
        .expect("entry");
    let raw = tar.into_inner().expect("tar");
    let diff_id = Digest::sha256(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}

/// Pushes an image whose config has `config`; returns its manifest.
async fn push_image(
    p: &Pusher,
    tag: &str,
    arch: &str,
    docker: bool,
    config: serde_json::Value,
) -> Descriptor {
    let (layer, diff_id) = layer();
    let layer_digest = p.blob(&layer).await;
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}
    }))
    .expect("json");
    let cfg_digest = p.blob(&cfg).await;
    let (manifest_type, config_type, layer_type) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": cfg_digest.to_string(), "size": cfg.len()},
        "layers": [{"mediaType": layer_type, "digest": layer_digest.to_string(), "size": layer.len()}]
    });
    p.manifest(tag, manifest_type, &manifest).await
}

async fn seed(host: &str) {
    let p = Pusher::new(host);
    let web = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo 'hello world' && sleep 1"],
        "WorkingDir": "/srv", "User": "vcap",
        "ExposedPorts": {"9090/tcp": {}, "8080/tcp": {}}
    });
    push_image(&p, "v1", "amd64", true, web).await;
    let plain = serde_json::json!({"Cmd": ["/hello"]});
    push_image(&p, "latest", "amd64", false, plain).await;
    let arm = push_image(
        &p,
        "arm-only",
        "arm64",
        false,
        serde_json::json!({"Cmd": ["/arm"]}),
    )
    .await;
    let amd = push_image(
        &p,
        "amd-only",
        "amd64",
        false,
        serde_json::json!({"Cmd": ["/amd", "x y"]}),
    )
    .await;
    let with = |d: &Descriptor, arch: &str| {
        let mut v = d.json();
        v["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        v
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with(&arm, "arm64"), with(&amd, "amd64")]
    });
    p.manifest("multi", "application/vnd.oci.image.index.v1+json", &index)
        .await;
    let arm_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with(&arm, "arm64")]
    });
    p.manifest(
        "arm-index",
        "application/vnd.oci.image.index.v1+json",
        &arm_index,
    )
    .await;
}

fn run(args: &[String], out: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg(format!("-outputMetadataJSONFilename={}", out.display()))
        .env_remove("HOME")
        .output()
        .expect("run lifecycle-docker-builder")
}

fn result(out: &Path) -> (serde_json::Value, serde_json::Value) {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out).expect("result.json")).expect("json");
    let meta = serde_json::from_str(r["execution_metadata"].as_str().expect("string"))
        .expect("execution_metadata json");
    (r, meta)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn docker_builder_against_a_real_registry() {
    let dir = tempfile::tempdir().expect("tmp");
    let registry = Registry::start(dir.path());
    let host = registry.host.clone();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(seed(&host));
    let insecure = format!("-insecureDockerRegistries=other:5000,{host}");
    let out = dir.path().join("result.json");

    // Docker schema 2, every kept field.
    let o = run(
        &[format!("-dockerRef={host}/{REPO}:v1"), insecure.clone()],
        &out,
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        registry.log_text()
    );
    let (r, meta) = result(&out);
    assert_eq!(r["lifecycle_type"], "docker");
    assert_eq!(
        r["lifecycle_metadata"]["docker_image"],
        format!("{host}/{REPO}:v1")
    );
    let web = r["process_types"]["web"].as_str().expect("web");
    assert_eq!(
        shlex::split(web).expect("split"),
        ["/bin/sh", "-c", "echo 'hello world' && sleep 1"]
    );
    assert_eq!(
        meta,
        serde_json::json!({
            "cmd": ["echo 'hello world' && sleep 1"], "entrypoint": ["/bin/sh", "-c"],
            "workdir": "/srv", "user": "vcap",
            "ports": [{"Port": 8080, "Protocol": "tcp"}, {"Port": 9090, "Protocol": "tcp"}]
        })
    );

    // No tag: latest, an OCI manifest, user defaults to root.
    let o = run(
        &[format!("-dockerRef={host}/{REPO}"), insecure.clone()],
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (r, meta) = result(&out);
    assert_eq!(
        r["lifecycle_metadata"]["docker_image"],
        format!("{host}/{REPO}:latest")
    );
    assert_eq!(r["process_types"]["web"], "/hello");
    assert_eq!(meta["user"], "root");
    assert_eq!(meta["ports"], serde_json::json!([]));

    // An index: its linux/amd64 manifest is the one read.
    let o = run(
        &[format!("-dockerRef={host}/{REPO}:multi"), insecure.clone()],
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (r, _) = result(&out);
    assert_eq!(r["process_types"]["web"], "/amd 'x y'");

    std::fs::remove_file(&out).expect("rm");
    let failures = [
        (format!("-dockerRef={host}/{REPO}:nope"), "not found"),
        (format!("-dockerRef={host}/lifecycle/absent"), "not found"),
        (format!("-dockerRef={host}/{REPO}:arm-index"), "linux/amd64"),
        (
            format!("-dockerRef=127.0.0.1:{}/x", free_port()),
            "127.0.0.1",
        ),
        (
            "-dockerRef=Not A Ref".to_string(),
            "invalid docker image reference",
        ),
    ];
    for (arg, expected) in failures {
        let o = run(&[arg.clone(), insecure.clone()], &out);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{arg}: {err}");
        assert!(err.contains(expected), "{arg}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!out.exists(), "no result.json after a failure");
    }

    // Not on the insecure list: HTTPS to a plain-HTTP registry fails clearly.
    let o = run(&[format!("-dockerRef={host}/{REPO}:v1")], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("insecure-registry list"),
        "{}",
        stderr(&o)
    );

    // Bad flags are usage errors.
    let o = run(&["-dockerRef=x".into(), "-bogus=1".into()], &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
