//! Pulls from a real registry (Debian's `docker-registry` on loopback) with
//! images this test builds and pushes: OCI and Docker manifests, a
//! multi-arch index, by tag and by digest; token authentication with good
//! and bad credentials; TLS with a configured CA, without it, and insecure.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::registry::{htpasswd, Mode, Pusher, Registry, TestCert, TokenServer, PASSWORD, USER};
use common::{image_documents, require_root, LayerBuilder};
use garden_image::digest::Digest;
use garden_image::{Credentials, IdMapping, ImageError};

const REPO: &str = "garden/app";

/// Registry storage holding the test images; the registry that wrote it is
/// stopped, so each test can serve it the way it needs.
struct Seeded {
    dir: tempfile::TempDir,
    storage: PathBuf,
    v1: Digest,
    config_id: Digest,
}

fn layers(arch: &str) -> Vec<Vec<u8>> {
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", "NAME=garden-test\n")
        .file("etc/motd", "hello\n")
        .gzip();
    let top = LayerBuilder::new()
        .file("arch", arch)
        .dir("etc", 0o755)
        .file("etc/.wh.motd", "")
        .gzip();
    vec![base, top]
}

async fn push_image(p: &Pusher, layers: &[Vec<u8>], docker: bool) -> (Vec<u8>, Digest) {
    let (config, manifest) = image_documents(layers, &["PATH=/usr/bin:/bin", "LANG=C"]);
    for l in layers {
        p.blob(REPO, l).await;
    }
    let config_id = p.blob(REPO, &config).await;
    if !docker {
        return (manifest, config_id);
    }
    let text = String::from_utf8(manifest)
        .expect("utf-8")
        .replace(
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .replace(
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.container.image.v1+json",
        )
        .replace(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        );
    (text.into_bytes(), config_id)
}

async fn seed() -> Seeded {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("data");
    std::fs::create_dir(&storage).expect("mkdir");
    let registry = Registry::start(&storage, Mode::Open);
    let p = Pusher::new(&registry.host);
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let (manifest, config_id) = push_image(&p, &layers("amd64"), false).await;
    let v1 = p.manifest(REPO, "v1", oci, &manifest).await;
    let (docker, _) = push_image(&p, &layers("amd64"), true).await;
    p.manifest(
        REPO,
        "docker",
        "application/vnd.docker.distribution.manifest.v2+json",
        &docker,
    )
    .await;
    let (arm, _) = push_image(&p, &layers("arm64"), false).await;
    let arm_digest = p
        .manifest(REPO, &Digest::sha256(&arm).to_string(), oci, &arm)
        .await;
    let entry = |d: &Digest, size: usize, arch: &str| {
        serde_json::json!({"mediaType": oci, "digest": d.to_string(), "size": size,
                           "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm_digest, arm.len(), "arm64"), entry(&v1, manifest.len(), "amd64")]
    });
    let index = serde_json::to_vec(&index).expect("json");
    p.manifest(
        REPO,
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await;
    drop(registry);
    Seeded {
        dir,
        storage,
        v1,
        config_id,
    }
}

fn check_image(image: &garden_image::Image) {
    assert_eq!(image.layers.len(), 2);
    let top = &image.layers[0];
    assert_eq!(
        std::fs::read_to_string(top.join("arch")).expect("arch"),
        "amd64"
    );
    assert!(image.layers[1].join("etc/os-release").is_file());
    assert_eq!(image.config.env, ["PATH=/usr/bin:/bin", "LANG=C"]);
    assert_eq!(image.config.user.as_deref(), Some("1000"));
    assert_eq!(image.config.cmd, ["/bin/sh"]);
}

#[tokio::test]
async fn pulls_by_tag_digest_and_index_from_an_open_registry() {
    require_root();
    let s = seed().await;
    let registry = Registry::start(&s.storage, Mode::Open);
    let host = registry.host.clone();
    let t = common::store_with(|c| c.insecure_registries = vec![host.clone()]);
    let none = IdMapping::Identity;

    let image = t
        .store
        .pull(&format!("docker://{host}/{REPO}:v1"), None, &none)
        .await
        .expect("by tag");
    check_image(&image);
    assert_eq!(image.id, s.config_id.to_string());
    let downloaded = t.store.metrics().bytes_downloaded;
    assert!(downloaded > 0);

    let start = Instant::now();
    let cached = t
        .store
        .pull(&format!("docker://{host}/{REPO}#v1"), None, &none)
        .await
        .expect("garden form");
    eprintln!("cached registry pull: {:?}", start.elapsed());
    assert_eq!(cached, image);
    assert_eq!(
        t.store.metrics().bytes_downloaded,
        downloaded,
        "nothing downloaded again"
    );

    let by_digest = t
        .store
        .pull(&format!("docker://{host}/{REPO}@{}", s.v1), None, &none)
        .await
        .expect("by digest");
    assert_eq!(by_digest, image);
    let docker = t
        .store
        .pull(&format!("docker://{host}/{REPO}:docker"), None, &none)
        .await
        .expect("docker schema 2");
    check_image(&docker);
    let multi = t
        .store
        .pull(&format!("docker://{host}/{REPO}:multi"), None, &none)
        .await
        .expect("index");
    assert_eq!(
        multi, image,
        "the index resolves to the linux/amd64 manifest"
    );

    let shifted = IdMapping::Shifted {
        root_host_uid: 4294967294,
        root_host_gid: 4294967294,
    };
    let image_s = t
        .store
        .pull(&format!("docker://{host}/{REPO}:v1"), None, &shifted)
        .await
        .expect("shifted");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(image_s.layers[0].join("arch")).expect("stat");
    assert_eq!(md.uid(), 4294967294);

    drop(s.dir);
}

#[tokio::test]
async fn registry_errors_are_clear() {
    require_root();
    let s = seed().await;
    let registry = Registry::start(&s.storage, Mode::Open);
    let host = registry.host.clone();
    let t = common::store_with(|c| c.insecure_registries = vec![host.clone()]);
    let none = IdMapping::Identity;
    let err = t
        .store
        .pull(&format!("docker://{host}/{REPO}:nope"), None, &none)
        .await
        .expect_err("missing tag");
    assert!(
        err.to_string()
            .contains("manifest garden/app:nope not found"),
        "{err}"
    );
    let err = t
        .store
        .pull(&format!("docker://{host}/other/repo:v1"), None, &none)
        .await
        .expect_err("missing repo");
    assert!(err.to_string().contains("not found"), "{err}");

    // Not on the insecure list: HTTPS only, and this registry speaks HTTP.
    let strict = common::store();
    let err = strict
        .store
        .pull(&format!("docker://{host}/{REPO}:v1"), None, &none)
        .await
        .expect_err("https only");
    assert!(matches!(err, ImageError::Registry(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("https://{host}/v2/")),
        "{err}"
    );
    drop(s.dir);
}

#[tokio::test]
async fn token_authentication_with_good_and_bad_credentials() {
    require_root();
    let s = seed().await;
    let cert = TestCert::generate(s.dir.path());
    let tokens = TokenServer::start(&cert);
    let registry = Registry::start(
        &s.storage,
        Mode::Token {
            realm: tokens.realm.clone(),
            cert: &cert,
        },
    );
    let host = registry.host.clone();
    let insecure = vec![host.clone(), tokens.host.clone()];
    let t = common::store_with(|c| c.insecure_registries = insecure);
    let uri = format!("docker://{host}/{REPO}:v1");
    let good = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let image = t.store.pull(&uri, Some(good), &IdMapping::Identity).await;
    let image = image.unwrap_or_else(|e| {
        panic!(
            "pull with a token: {e}\nregistry log:\n{}",
            registry.log_text()
        )
    });
    check_image(&image);

    let bad = Credentials {
        username: USER.into(),
        password: "wrong".into(),
    };
    let err = t
        .store
        .pull(&uri, Some(bad), &IdMapping::Identity)
        .await
        .expect_err("wrong password");
    let msg = err.to_string();
    assert!(
        msg.contains("authentication failed")
            && msg.contains("rejected the credentials of \"garden\""),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong"),
        "the password never appears in errors: {msg}"
    );

    let err = t
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("requires credentials"), "{err}");

    // A token realm over plain HTTP is refused unless its host is listed.
    let only_registry = common::store_with(|c| c.insecure_registries = vec![host.clone()]);
    let err = only_registry
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect_err("http realm");
    assert!(err.to_string().contains("must be https"), "{err}");
}

#[tokio::test]
async fn tls_with_a_configured_ca_without_it_and_insecure() {
    require_root();
    let s = seed().await;
    let cert = TestCert::generate(s.dir.path());
    let registry = Registry::start(&s.storage, Mode::Tls { cert: &cert });
    let host = registry.host.clone();
    let uri = format!("docker://{host}/{REPO}:v1");

    let trusted = common::store_with(|c| c.ca_files = vec![cert.cert_pem.clone()]);
    let image = trusted
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect("verified TLS");
    check_image(&image);

    let untrusted = common::store();
    let err = untrusted
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect_err("unknown CA");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let insecure = common::store_with(|c| c.insecure_registries = vec![host.clone()]);
    insecure
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect("insecure TLS");
}

#[tokio::test]
async fn basic_authentication_over_tls() {
    require_root();
    let s = seed().await;
    let cert = TestCert::generate(s.dir.path());
    let htpasswd = htpasswd(s.dir.path());
    let registry = Registry::start(
        &s.storage,
        Mode::Basic {
            cert: &cert,
            htpasswd,
        },
    );
    let uri = format!("docker://{}/{REPO}:v1", registry.host);
    let t = common::store_with(|c| c.ca_files = vec![cert.cert_pem.clone()]);
    let good = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let image = t
        .store
        .pull(&uri, Some(good), &IdMapping::Identity)
        .await
        .expect("basic auth");
    check_image(&image);
    let bad = Credentials {
        username: USER.into(),
        password: "nope".into(),
    };
    let err = t
        .store
        .pull(&uri, Some(bad), &IdMapping::Identity)
        .await
        .expect_err("bad password");
    assert!(
        err.to_string()
            .contains("rejected the username or password"),
        "{err}"
    );
    let err = t
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("requires credentials"), "{err}");
}
