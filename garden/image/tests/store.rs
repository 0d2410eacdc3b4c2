//! The store: one unpack for concurrent pulls, references that survive a
//! restart, collection under the size cap, crash recovery, OCI layouts.

mod common;

use common::{require_root, write, write_layout, LayerBuilder};
use garden_image::{IdMapping, ImageError, Store};

fn big_layer(name: &str, kib: usize) -> Vec<u8> {
    LayerBuilder::new()
        .file(&format!("{name}.bin"), &"x".repeat(kib * 1024))
        .gzip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_one_image_unpack_each_layer_once() {
    require_root();
    let t = common::store();
    let layout = t.dir.path().join("layout");
    let layers = vec![big_layer("a", 512), big_layer("b", 512)];
    write_layout(&layout, &layers, "latest", &["PATH=/bin"]);
    let uri = format!("oci://{}#latest", layout.display());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, uri) = (t.store.clone(), uri.clone());
        tasks.spawn(async move { store.pull(&uri, None, &IdMapping::Identity).await });
    }
    let mut images = Vec::new();
    while let Some(r) = tasks.join_next().await {
        images.push(r.expect("task").expect("pull"));
    }
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "every pull sees the same image"
    );
    let m = t.store.metrics();
    assert_eq!((m.pulls, m.layers_unpacked, m.layers_reused), (8, 2, 14));
    let image = &images[0];
    assert!(image.layers[0].join("b.bin").is_file(), "top layer first");
    assert_eq!(image.config.env, ["PATH=/bin"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/home/vcap"));
    assert_eq!(image.size_bytes, 1024 * 1024);
}

#[tokio::test]
async fn layout_errors_are_clear() {
    require_root();
    let t = common::store();
    let layout = t.dir.path().join("layout");
    let layers = vec![big_layer("a", 1)];
    write_layout(&layout, &layers, "v1", &[]);
    let err = t
        .store
        .pull(
            &format!("oci://{}#v2", layout.display()),
            None,
            &IdMapping::Identity,
        )
        .await
        .expect_err("no such tag")
        .to_string();
    assert!(
        err.contains("no manifest tagged \"v2\"") && err.contains("v1"),
        "{err}"
    );
    // A plain path to a layout works too (its only manifest).
    t.store
        .pull(layout.to_str().expect("utf-8"), None, &IdMapping::Identity)
        .await
        .expect("plain path");
    // A corrupted blob is caught by its digest.
    let blob = layout
        .join("blobs/sha256")
        .join(garden_image::digest::Digest::sha256(&layers[0]).hex());
    let t2 = common::store();
    std::fs::write(&blob, common::gzip(b"not the layer")).expect("corrupt");
    let err = t2
        .store
        .pull(
            &format!("oci://{}#v1", layout.display()),
            None,
            &IdMapping::Identity,
        )
        .await
        .expect_err("corrupt")
        .to_string();
    assert!(err.contains("does not match its digest"), "{err}");
}

async fn pull_tar(
    store: &Store,
    dir: &std::path::Path,
    name: &str,
    kib: usize,
) -> garden_image::Image {
    let path = write(dir, &format!("{name}.tar.gz"), &big_layer(name, kib));
    store
        .pull(path.to_str().expect("utf-8"), None, &IdMapping::Identity)
        .await
        .expect("pull")
}

#[tokio::test]
async fn gc_keeps_referenced_layers_and_removes_the_least_recently_used() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path());
    let store = Store::open(config.clone()).expect("open");
    let a = pull_tar(&store, dir.path(), "a", 100).await;
    let b = pull_tar(&store, dir.path(), "b", 100).await;
    let c = pull_tar(&store, dir.path(), "c", 100).await;
    store.acquire(&a, "container-1").expect("acquire");
    // No cap: nothing goes.
    assert!(store.gc().expect("gc").removed.is_empty());
    drop(store);

    // A restart keeps the reference; a cap of two layers removes the
    // oldest unreferenced one (b), not the held one (a).
    let mut capped = config.clone();
    capped.max_size_bytes = 200 * 1024;
    let store = Store::open(capped).expect("reopen");
    assert_eq!(store.held_by("container-1"), Some(a.id.clone()));
    let report = store.gc().expect("gc");
    assert_eq!(report.removed, b.layer_keys);
    assert_eq!(
        (report.bytes_before, report.bytes_after),
        (300 * 1024, 200 * 1024)
    );
    assert!(!b.layers[0].exists() && a.layers[0].exists() && c.layers[0].exists());
    drop(store);

    // Cap 0: everything unreferenced goes; the held layer stays until released.
    let mut zero = config;
    zero.max_size_bytes = 0;
    let store = Store::open(zero).expect("reopen");
    assert_eq!(store.gc().expect("gc").removed, c.layer_keys);
    assert!(a.layers[0].exists());
    store.release("container-1").expect("release");
    store.release("container-1").expect("release twice is fine");
    assert_eq!(store.gc().expect("gc").removed, a.layer_keys);
    assert_eq!(store.usage().expect("usage").bytes, 0);
    let err = store.acquire(&a, "container-2").expect_err("collected");
    assert!(matches!(err, ImageError::LayerMissing { .. }), "{err}");
    // A collected image comes back on the next pull.
    let again = pull_tar(&store, dir.path(), "a", 100).await;
    assert!(again.layers[0].join("a.bin").is_file());
}

#[tokio::test]
async fn gc_spares_layers_within_the_grace_period() {
    require_root();
    let t = common::store_with(|c| {
        c.max_size_bytes = 0;
        c.gc_grace = std::time::Duration::from_secs(600);
    });
    let a = pull_tar(&t.store, t.dir.path(), "a", 10).await;
    let report = t.store.gc().expect("gc");
    assert!(report.removed.is_empty(), "just pulled, not yet acquired");
    assert!(a.layers[0].exists());
}

#[test]
fn open_recovers_from_a_crash_and_locks_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path());
    drop(Store::open(config.clone()).expect("open"));
    let root = &config.root;
    std::fs::create_dir_all(root.join("tmp/sha256-abc.1.0/rootfs/usr")).expect("half unpack");
    std::fs::create_dir_all(root.join("layers/sha256-dead/rootfs"))
        .expect("layer without metadata");
    let store = Store::open(config.clone()).expect("reopen");
    assert_eq!(std::fs::read_dir(root.join("tmp")).expect("tmp").count(), 0);
    assert!(!root.join("layers/sha256-dead").exists());
    match Store::open(config) {
        Err(ImageError::Busy { .. }) => {}
        Err(other) => panic!("expected Busy, got {other}"),
        Ok(_) => panic!("a second open of one store must fail"),
    }
    drop(store);
}
