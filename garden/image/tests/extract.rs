//! Layer extraction through the store: whiteouts that really stack in
//! overlayfs, hostile archives refused without a byte written outside,
//! device nodes refused for unprivileged containers, shifted ownership.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::{require_root, write, write_layout, LayerBuilder, Overlay};
use garden_image::{IdMapping, ImageError};

const MAXIMUS: IdMapping = IdMapping::Shifted {
    root_host_uid: 4294967294,
    root_host_gid: 4294967294,
};

fn two_layers() -> Vec<Vec<u8>> {
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/kept", "k")
        .file("etc/removed", "r")
        .dir("opaque", 0o755)
        .file("opaque/old", "o")
        .file("gone", "g")
        .gzip();
    let top = LayerBuilder::new()
        .file(".wh.gone", "")
        .dir("etc", 0o755)
        .file("etc/.wh.removed", "")
        .dir("opaque", 0o755)
        .file("opaque/.wh..wh..opq", "")
        .file("opaque/new", "n")
        .gzip();
    vec![base, top]
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn whiteouts_and_opaque_dirs_stack_in_a_real_overlay() {
    require_root();
    let t = common::store();
    let layout = t.dir.path().join("layout");
    write_layout(&layout, &two_layers(), "v1", &[]);
    let uri = format!("oci://{}#v1", layout.display());
    let image = t
        .store
        .pull(&uri, None, &IdMapping::Identity)
        .await
        .expect("pull");
    assert_eq!(image.layers.len(), 2);
    let top = &image.layers[0];
    let wh = std::fs::symlink_metadata(top.join("gone")).expect("whiteout");
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0/0 char device"
    );

    let ov = Overlay::mount(&image.layers);
    assert_eq!(names(&ov.target), ["etc", "opaque"]);
    assert_eq!(names(&ov.target.join("etc")), ["kept"]);
    assert_eq!(names(&ov.target.join("opaque")), ["new"]);
    drop(ov);

    // As an unprivileged container sees it: root of a user namespace that
    // is host uid 4294967294, the overlay mounted there with `userxattr`.
    let shifted = t
        .store
        .pull(&uri, None, &MAXIMUS)
        .await
        .expect("pull shifted");
    let out = in_maximus_userns(
        t.dir.path(),
        &shifted.layers,
        "stat -c '%u %g %a' $M/etc/kept; cat $M/etc/kept; echo; ls $M/opaque; ls $M/etc; \
         echo new > $M/etc/written && stat -c '%u %g' $M/etc/written",
    );
    assert_eq!(out, "0 0 644\nk\nnew\nkept\n0 0\n");
}

/// Runs `script` as root of a new user namespace mapped to host uid/gid
/// 4294967294 (Garden's maximus), with `$M` an overlay of `layers` mounted
/// in that namespace, as the runtime does for unprivileged containers.
fn in_maximus_userns(scratch: &Path, layers: &[std::path::PathBuf], script: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    // The namespace's root must be able to reach the layers and its dirs.
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = scratch.join("userns");
    let (u, w, m) = (dir.join("u"), dir.join("w"), dir.join("m"));
    for d in [&dir, &u, &w, &m] {
        std::fs::create_dir(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(4294967294), Some(4294967294)).expect("chown");
    }
    let lower: Vec<String> = layers.iter().map(|p| p.display().to_string()).collect();
    let full = format!(
        "set -e; M={m}; mount -t overlay overlay -o lowerdir={},upperdir={},workdir={},userxattr $M; {script}",
        lower.join(":"),
        u.display(),
        w.display(),
        m = m.display(),
    );
    let out = Command::new("setpriv")
        .args(["--reuid=4294967294", "--regid=4294967294", "--clear-groups"])
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &full,
        ])
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let e = e.expect("entry");
            out.push(e.path().display().to_string());
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn hostile_archives_are_refused_and_write_nothing_outside() {
    require_root();
    let t = common::store();
    let outside = t.dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let out = outside.display().to_string();
    let deep_up = format!("{}{}", "../".repeat(20), out.trim_start_matches('/'));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            LayerBuilder::new().file("a/../../../outside/x", "x").tar(),
            "`..`",
        ),
        (
            "absolute",
            LayerBuilder::new().file(&format!("{out}/abs"), "x").tar(),
            "absolute",
        ),
        (
            "symlink-abs",
            LayerBuilder::new()
                .symlink("evil", &out)
                .file("evil/through", "x")
                .tar(),
            "outside the layer",
        ),
        (
            "symlink-rel",
            LayerBuilder::new()
                .symlink("up", &deep_up)
                .file("up/through", "x")
                .tar(),
            "outside the layer",
        ),
        (
            "hardlink-dotdot",
            LayerBuilder::new()
                .hardlink("hl", "../../../../../etc/passwd")
                .tar(),
            "`..`",
        ),
        (
            "hardlink-via-symlink",
            LayerBuilder::new()
                .symlink("etcdir", "/etc")
                .hardlink("hl", "etcdir/passwd")
                .tar(),
            "outside the layer",
        ),
        (
            "hardlink-absolute",
            LayerBuilder::new().hardlink("hl", "/etc/passwd").tar(),
            "absolute",
        ),
    ];
    for (name, tar, expect) in cases {
        let path = write(t.dir.path(), &format!("{name}.tar"), &tar);
        let err = t
            .store
            .pull(path.to_str().expect("utf-8"), None, &IdMapping::Identity)
            .await
            .expect_err(name);
        let msg = err.to_string();
        assert!(matches!(err, ImageError::Extract { .. }), "{name}: {msg}");
        assert!(msg.contains(expect), "{name}: {msg}");
    }
    assert!(
        all_files(&outside).is_empty(),
        "something was written outside"
    );
    let store_root = t.store.config().root.clone();
    assert!(all_files(&store_root.join("layers")).is_empty());
    assert!(all_files(&store_root.join("tmp")).is_empty());
    assert!(!all_files(t.dir.path())
        .iter()
        .any(|f| f.ends_with("/x") || f.ends_with("/through")));
}

#[tokio::test]
async fn device_nodes_only_for_privileged_containers() {
    require_root();
    let t = common::store();
    let tar = LayerBuilder::new()
        .dir("dev", 0o755)
        .char_device("dev/null", 1, 3)
        .char_device("dev/wh", 0, 0)
        .tar();
    let path = write(t.dir.path(), "dev.tar", &tar);
    let uri = path.to_str().expect("utf-8");
    let err = t
        .store
        .pull(uri, None, &MAXIMUS)
        .await
        .expect_err("device for shifted");
    let msg = err.to_string();
    assert!(
        msg.contains("dev/null") && msg.contains("device nodes are not allowed"),
        "{msg}"
    );

    let image = t
        .store
        .pull(uri, None, &IdMapping::Identity)
        .await
        .expect("privileged");
    let md = std::fs::symlink_metadata(image.layers[0].join("dev/null")).expect("stat");
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));

    // A store told to skip them leaves device nodes out (whiteouts stay).
    let skipping = common::store_with(|c| c.skip_unprivileged_devices = true);
    let image = skipping
        .store
        .pull(uri, None, &MAXIMUS)
        .await
        .expect("skip devices");
    assert!(!image.layers[0].join("dev/null").exists());
    let wh = std::fs::symlink_metadata(image.layers[0].join("dev/wh")).expect("whiteout kept");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
}

fn caps_v2() -> Vec<u8> {
    // CAP_NET_RAW (13) permitted, effective flag set.
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v
}

#[tokio::test]
async fn shifted_layers_belong_to_the_container_root() {
    require_root();
    let t = common::store();
    let caps = caps_v2();
    let tar = LayerBuilder::new()
        .dir("bin", 0o755)
        .pax(&[
            ("SCHILY.xattr.security.capability", &caps),
            ("SCHILY.xattr.user.note", b"hi"),
        ])
        .file_owned("bin/ping", "elf", 0o4755, 0, 0)
        .hardlink("bin/ping2", "bin/ping")
        .file_owned("home-file", "v", 0o600, 1000, 1001)
        .symlink("link", "/bin/ping")
        .gzip();
    let path = write(t.dir.path(), "rootfs.tar.gz", &tar);
    let uri = path.to_str().expect("utf-8");
    let image = t.store.pull(uri, None, &MAXIMUS).await.expect("pull");
    let root = &image.layers[0];
    let ping = std::fs::symlink_metadata(root.join("bin/ping")).expect("stat");
    assert_eq!((ping.uid(), ping.gid()), (4294967294, 4294967294));
    assert_eq!(ping.mode() & 0o7777, 0o4755, "set-uid bit kept after chown");
    assert_eq!(ping.nlink(), 2);
    assert_eq!(ping.mtime(), 1_600_000_000);
    let stored_caps = xattr::get(root.join("bin/ping"), "security.capability")
        .expect("xattr")
        .expect("caps");
    assert_eq!(stored_caps.len(), 24, "v3 capabilities with a root id");
    assert_eq!(&stored_caps[20..], &4294967294u32.to_le_bytes());
    assert_eq!(
        xattr::get(root.join("bin/ping"), "user.note")
            .expect("xattr")
            .as_deref(),
        Some(&b"hi"[..])
    );
    let home = std::fs::symlink_metadata(root.join("home-file")).expect("stat");
    assert_eq!(
        (home.uid(), home.gid(), home.mode() & 0o7777),
        (1000, 1001, 0o600)
    );
    assert_eq!(
        std::fs::symlink_metadata(root.join("link"))
            .expect("stat")
            .uid(),
        4294967294
    );
    assert_eq!(
        std::fs::symlink_metadata(root).expect("stat").uid(),
        4294967294
    );
    assert_eq!((image.inodes, image.size_bytes), (4, 4));

    let plain = t
        .store
        .pull(uri, None, &IdMapping::Identity)
        .await
        .expect("pull");
    assert_ne!(plain.layers, image.layers, "one copy per mapping");
    assert_eq!(
        std::fs::symlink_metadata(plain.layers[0].join("bin/ping"))
            .expect("stat")
            .uid(),
        0
    );
}

#[tokio::test]
async fn a_rootfs_directory_is_used_as_is_or_shifted_once() {
    require_root();
    let t = common::store();
    let rootfs = t.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::write(rootfs.join("bin/sh"), "#!").expect("write");
    let uri = rootfs.to_str().expect("utf-8");
    let plain = t
        .store
        .pull(uri, None, &IdMapping::Identity)
        .await
        .expect("pull");
    assert_eq!(plain.layers, std::slice::from_ref(&rootfs));
    assert!(plain.layer_keys.is_empty());
    assert_eq!((plain.inodes, plain.size_bytes), (2, 2));

    let shifted = t.store.pull(uri, None, &MAXIMUS).await.expect("pull");
    assert_ne!(shifted.layers[0], rootfs);
    let md = std::fs::metadata(shifted.layers[0].join("bin/sh")).expect("stat");
    assert_eq!(md.uid(), 4294967294);
    let again = t.store.pull(uri, None, &MAXIMUS).await.expect("pull");
    assert_eq!(again.layers, shifted.layers);
    let m = t.store.metrics();
    assert_eq!((m.layers_unpacked, m.layers_reused), (1, 1));
}
