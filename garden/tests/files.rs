//! StreamIn, StreamOut and user lookup through `/proc/<pid>/root` of real
//! running containers: round trips, escapes that must write nothing outside
//! the destination, and owners under Garden's maximus mapping.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{stderr, stdout, TestBundle};
use garden::daemon::files::{
    lookup_user, stream_in, stream_out, FilesError, IdMap, Rejection, User,
};
use serde_json::json;
use tar::{EntryType, Header};

const MAXIMUS: u32 = 4294967294;

/// A running container whose init only waits (Garden's shape).
fn running(b: TestBundle) -> (TestBundle, PathBuf) {
    let b = b.edit(|c| {
        c["annotations"]["garden.init"] = json!("idle");
    });
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.runtime(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let pid = b.state()["pid"].as_i64().expect("pid") as i32;
    (b, garden::daemon::files::container_root(pid))
}

fn root_user() -> User {
    User {
        uid: 0,
        gid: 0,
        home: "/root".into(),
        additional_gids: Vec::new(),
    }
}

/// `sh -c script` inside the container; its stdout.
fn exec(b: &TestBundle, script: &str) -> String {
    let out = b.runtime(&["exec", &b.id, "sh", "-c", script]);
    assert!(out.status.success(), "exec {script}: {}", stderr(&out));
    stdout(&out)
}

/// One raw tar entry with any name (the tar crate refuses `..` and `/`).
fn raw(kind: EntryType, name: &str, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(1_600_000_000);
    let field = |f: &mut [u8; 100], v: &str| f[..v.len()].copy_from_slice(v.as_bytes());
    field(&mut h.as_old_mut().name, name);
    if let Some(l) = link {
        field(&mut h.as_old_mut().linkname, l);
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

/// What a tar entry says, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    path: String,
    kind: u8,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
    link: Option<String>,
    data: Vec<u8>,
}

fn list(tar_bytes: &[u8]) -> Vec<Item> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut items = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("data");
        items.push(Item {
            path: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            kind: h.entry_type().as_byte(),
            mode: h.mode().expect("mode"),
            mtime: h.mtime().expect("mtime"),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            link,
            data,
        });
    }
    items
}

fn out_of(root: &Path, source: &str, map: &IdMap) -> Vec<Item> {
    let mut buf = Vec::new();
    stream_out(root, source, map, &mut buf).expect("stream out");
    list(&buf)
}

const LONG: &str = "a-name-longer-than-the-hundred-bytes-of-a-tar-header-field-so-that-gnu-long-name-records-are-needed.txt";

/// The tree of the round trip: every kind StreamIn writes.
fn tree_archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |kind, path: &str, mode, mtime, link: Option<&str>, data: &[u8]| {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).expect("link"),
            None => b.append_data(&mut h, path, data).expect("data"),
        }
    };
    add(
        EntryType::Directory,
        "tree/",
        0o750,
        1_500_000_000,
        None,
        b"",
    );
    add(
        EntryType::Regular,
        "tree/a.txt",
        0o640,
        1_600_000_000,
        None,
        b"hello\n",
    );
    add(
        EntryType::Directory,
        "tree/sub/",
        0o755,
        1_500_000_100,
        None,
        b"",
    );
    let script = b"#!/bin/sh\necho run\n";
    add(
        EntryType::Regular,
        "tree/sub/run.sh",
        0o4755,
        1_600_000_100,
        None,
        script,
    );
    add(
        EntryType::Symlink,
        "tree/link",
        0o777,
        1_600_000_200,
        Some("a.txt"),
        b"",
    );
    add(
        EntryType::Link,
        "tree/hard",
        0o640,
        1_600_000_000,
        Some("tree/a.txt"),
        b"",
    );
    let long = format!("tree/sub/{LONG}");
    add(
        EntryType::Regular,
        &long,
        0o600,
        1_600_000_300,
        None,
        b"long\n",
    );
    add(
        EntryType::Regular,
        "tree/implicit/deep/f",
        0o644,
        1_600_000_400,
        None,
        b"x",
    );
    b.into_inner().expect("tar")
}

#[test]
fn a_tree_goes_in_and_comes_out_the_same() {
    let (b, root) = running(TestBundle::new("files-rt"));
    let id = IdMap::identity();
    stream_in(&root, "/tmp/rt", &root_user(), &id, &tree_archive()[..]).expect("stream in");

    // The container sees the files (its own overlay, via exec).
    assert_eq!(
        exec(&b, "cat /tmp/rt/tree/a.txt /tmp/rt/tree/link"),
        "hello\nhello\n"
    );
    assert_eq!(exec(&b, "/tmp/rt/tree/sub/run.sh"), "run\n");
    let host = root.join("tmp/rt/tree");
    let meta = |p: &str| std::fs::symlink_metadata(host.join(p)).expect(p);
    assert_eq!(meta("a.txt").mode() & 0o7777, 0o640);
    assert_eq!(meta("sub/run.sh").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(meta("a.txt").mtime(), 1_600_000_000);
    assert_eq!(meta("").mtime(), 1_500_000_000, "directory mtime set last");
    assert_eq!(meta("").mode() & 0o7777, 0o750);
    assert_eq!(meta("hard").ino(), meta("a.txt").ino(), "hard link");
    assert_eq!(meta("implicit/deep").mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_link(host.join("link")).expect("link"),
        Path::new("a.txt")
    );
    assert_eq!(meta(&format!("sub/{LONG}")).len(), 5);
    // Written into the container's overlay upper layer, not the shared lower.
    assert!(b.path().join("upper/tmp/rt/tree/a.txt").exists());

    let out = out_of(&root, "/tmp/rt/tree", &id);
    let find = |path: &str| {
        out.iter()
            .find(|i| i.path == path)
            .unwrap_or_else(|| panic!("{path} in {out:#?}"))
    };
    let a = find("tree/a.txt");
    assert_eq!(
        (a.mode, a.mtime, a.uid, a.data.as_slice()),
        (0o640, 1_600_000_000, 0, &b"hello\n"[..])
    );
    assert_eq!(find("tree/hard").kind, b'1');
    assert_eq!(find("tree/hard").link.as_deref(), Some("tree/a.txt"));
    assert_eq!(find("tree/link").link.as_deref(), Some("a.txt"));
    assert_eq!(find("tree/sub/run.sh").mode, 0o4755);
    assert_eq!(find("tree/").mtime, 1_500_000_000);
    assert_eq!(find(&format!("tree/sub/{LONG}")).data, b"long\n");

    // What came out goes back in elsewhere and comes out identical.
    let mut first = Vec::new();
    stream_out(&root, "/tmp/rt/tree", &id, &mut first).expect("out");
    stream_in(&root, "/tmp/copy", &root_user(), &id, &first[..]).expect("in again");
    assert_eq!(out_of(&root, "/tmp/copy/tree", &id), out);

    // A trailing slash archives the contents as ./...
    let contents = out_of(&root, "/tmp/rt/tree/", &id);
    assert_eq!(contents[0].path, "./");
    assert!(
        contents.iter().skip(1).all(|i| i.path.starts_with("./")),
        "{contents:#?}"
    );
    assert_eq!(contents.len(), out.len());
    // A file alone.
    let single = out_of(&root, "/tmp/rt/tree/a.txt", &id);
    assert_eq!(single.len(), 1);
    assert_eq!(
        (single[0].path.as_str(), single[0].data.as_slice()),
        ("a.txt", &b"hello\n"[..])
    );
    // A missing source.
    let err = stream_out(&root, "/tmp/rt/nope", &id, Vec::new()).expect_err("missing");
    assert!(
        matches!(err, FilesError::NotFound { .. }) && err.is_bad_input(),
        "{err}"
    );
    assert!(err.to_string().contains("/tmp/rt/nope"), "{err}");
}

#[test]
fn existing_files_are_replaced_never_followed() {
    let (b, root) = running(TestBundle::new("files-replace"));
    let id = IdMap::identity();
    let passwd_before = exec(&b, "cat /etc/passwd");
    let first = archive(&[
        raw(EntryType::Symlink, "f", Some("/etc/passwd"), b""),
        raw(EntryType::Regular, "d/old", None, b"old"),
    ]);
    stream_in(&root, "/tmp/rp", &root_user(), &id, &first[..]).expect("first");
    let second = archive(&[
        raw(EntryType::Regular, "f", None, b"new"),
        raw(EntryType::Regular, "d/new", None, b"new"),
    ]);
    stream_in(&root, "/tmp/rp", &root_user(), &id, &second[..]).expect("second");
    assert_eq!(
        exec(&b, "cat /etc/passwd"),
        passwd_before,
        "written through a symlink"
    );
    assert_eq!(exec(&b, "cat /tmp/rp/f; ls /tmp/rp/d"), "newnew\nold\n");
    // A destination that is a file is refused.
    let err = stream_in(&root, "/tmp/rp/f", &root_user(), &id, &first[..]).expect_err("file");
    assert!(
        matches!(err, FilesError::NotADirectory { .. }) && err.is_bad_input(),
        "{err}"
    );
    // A file over a directory that is not empty is refused.
    let third = archive(&[raw(EntryType::Regular, "d", None, b"x")]);
    let err = stream_in(&root, "/tmp/rp", &root_user(), &id, &third[..]).expect_err("dir");
    assert!(
        matches!(
            err,
            FilesError::Rejected {
                reason: Rejection::ReplacesDirectory,
                ..
            }
        ),
        "{err}"
    );
}

/// Every path below `dir` (relative), symlinks not followed.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.symlink_metadata().expect("lstat").is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).expect("below").to_path_buf());
        }
    }
    out
}

#[test]
fn escapes_are_rejected_and_nothing_is_written_outside() {
    let (b, root) = running(TestBundle::new("files-esc"));
    let id = IdMap::identity();
    // A sentinel on the host beside the container's bundle, and a name that
    // must not appear anywhere on the host.
    let sentinel = b.path().join("sentinel");
    std::fs::create_dir(&sentinel).expect("sentinel");
    std::fs::write(sentinel.join("victim"), "intact").expect("victim");
    let s = sentinel
        .to_str()
        .expect("utf8")
        .trim_start_matches('/')
        .to_string();
    let unique = format!("garden-files-escape-{}", std::process::id());
    let ups = "../".repeat(12);
    let upper_before = tree(&b.path().join("upper"));

    let attacks: Vec<(Vec<Vec<u8>>, &str, Rejection)> = vec![
        (
            vec![raw(EntryType::Regular, &format!("../{unique}"), None, b"x")],
            "../",
            Rejection::ParentDir,
        ),
        (
            vec![raw(
                EntryType::Regular,
                &format!("{ups}{s}/dotdot"),
                None,
                b"x",
            )],
            "dotdot",
            Rejection::ParentDir,
        ),
        (
            vec![raw(EntryType::Regular, &format!("/{s}/abs"), None, b"x")],
            "abs",
            Rejection::Absolute,
        ),
        (
            vec![
                raw(EntryType::Symlink, "evil", Some(&format!("/{s}")), b""),
                raw(EntryType::Regular, "evil/through", None, b"x"),
            ],
            "evil/through",
            Rejection::Escapes,
        ),
        (
            vec![
                raw(EntryType::Symlink, "up", Some(&format!("{ups}{s}")), b""),
                raw(EntryType::Directory, "up/newdir/", None, b""),
            ],
            "up/newdir",
            Rejection::Escapes,
        ),
        (
            vec![raw(
                EntryType::Link,
                "hl",
                Some(&format!("{ups}{s}/victim")),
                b"",
            )],
            "hl",
            Rejection::LinkTargetParentDir,
        ),
        (
            vec![raw(EntryType::Link, "hl2", Some("evil/victim"), b"")],
            "hl2",
            Rejection::Escapes,
        ),
        (
            vec![raw(
                EntryType::Link,
                "hl3",
                Some(&format!("/{s}/victim")),
                b"",
            )],
            "hl3",
            Rejection::LinkTargetAbsolute,
        ),
        (
            vec![raw(EntryType::Char, "null2", None, b"")],
            "null2",
            Rejection::DeviceNode,
        ),
        (
            vec![raw(EntryType::Block, "sda", None, b"")],
            "sda",
            Rejection::DeviceNode,
        ),
        (
            vec![raw(EntryType::Fifo, "pipe", None, b"")],
            "pipe",
            Rejection::Fifo,
        ),
    ];
    for (entries, name, reason) in attacks {
        let tar_bytes = archive(&entries);
        let err = stream_in(&root, "/tmp/esc", &root_user(), &id, &tar_bytes[..]).expect_err(name);
        assert!(err.is_bad_input(), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
        match err {
            FilesError::Rejected { reason: r, .. } => assert_eq!(r, reason, "{name}"),
            other => panic!("{name}: {other}"),
        }
    }
    // Garbage is an invalid tar, also bad input.
    let err = stream_in(&root, "/tmp/esc", &root_user(), &id, &[7u8; 1024][..]).expect_err("junk");
    assert!(
        matches!(err, FilesError::InvalidTar { .. }) && err.is_bad_input(),
        "{err}"
    );
    // A destination through an absolute symlink resolves inside the
    // container: /home here is the container's, not the host's.
    let link = archive(&[raw(EntryType::Symlink, "tohome", Some("/home"), b"")]);
    stream_in(&root, "/tmp/esc", &root_user(), &id, &link[..]).expect("symlink");
    let ok = archive(&[raw(EntryType::Regular, "ok", None, b"in")]);
    let dest = format!("/tmp/esc/tohome/{unique}");
    stream_in(&root, &dest, &root_user(), &id, &ok[..]).expect("through a symlink");
    assert_eq!(exec(&b, &format!("cat /home/{unique}/ok")), "in");

    let entries: Vec<_> = std::fs::read_dir(&sentinel)
        .expect("sentinel")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(
        entries,
        ["victim"],
        "something was written beside the container"
    );
    let victim = std::fs::metadata(sentinel.join("victim")).expect("victim");
    assert_eq!(
        (
            std::fs::read_to_string(sentinel.join("victim")).expect("read"),
            victim.nlink()
        ),
        ("intact".into(), 1)
    );
    let on_host = [
        Path::new("/").join(&unique),
        Path::new("/home").join(&unique),
        b.path().join(&unique),
        std::env::temp_dir().join(&unique),
    ];
    for host in on_host {
        assert!(!host.exists(), "{} created on the host", host.display());
    }
    // Inside the container, only the destination changed (and /home, where
    // its symlink pointed).
    let new: Vec<_> = tree(&b.path().join("upper"))
        .difference(&upper_before)
        .cloned()
        .collect();
    let allowed =
        |p: &Path| p.starts_with("tmp/esc") || p.starts_with("home") || p == Path::new("tmp");
    assert!(
        new.iter().all(|p| allowed(p)),
        "written outside the destination: {new:?}"
    );
}

/// A container with Garden's unprivileged user namespace: container root is
/// maximus on the host, every other id is itself.
fn userns_container() -> (TestBundle, PathBuf) {
    let b = TestBundle::new("files-userns").with_copied_rootfs().edit(|c| {
        c["linux"]["namespaces"].as_array_mut().expect("ns").push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": MAXIMUS, "size": 1}, {"containerID": 1, "hostID": 1, "size": 65535}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
        // The host's cgroup hierarchy is not ours to mount in a user namespace.
        c["mounts"].as_array_mut().expect("mounts").retain(|m| m["type"] != "cgroup");
    });
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    running(b)
}

#[test]
fn owners_follow_the_maximus_mapping() {
    let (b, root) = userns_container();
    let map = IdMap::maximus(MAXIMUS);
    let tar_bytes = archive(&[
        raw(EntryType::Directory, "d/", None, b""),
        raw(EntryType::Regular, "d/f", None, b"x"),
        raw(EntryType::Symlink, "d/l", Some("f"), b""),
    ]);
    stream_in(&root, "/tmp/m/root", &root_user(), &map, &tar_bytes[..]).expect("as root");
    let vcap = lookup_user(&root, "vcap").expect("vcap");
    stream_in(&root, "/tmp/m/vcap", &vcap, &map, &tar_bytes[..]).expect("as vcap");

    for (dir, host_id) in [("root", MAXIMUS), ("vcap", 2000)] {
        for p in ["", "d", "d/f", "d/l"] {
            let m = std::fs::symlink_metadata(root.join("tmp/m").join(dir).join(p)).expect(p);
            assert_eq!(
                (m.uid(), m.gid()),
                (host_id, host_id),
                "{dir}/{p} on the host"
            );
        }
    }
    // Inside, root's files are root's and vcap's are vcap's.
    assert_eq!(
        exec(&b, "stat -c %u:%g /tmp/m/root/d/f /tmp/m/vcap/d/f"),
        "0:0\n2000:2000\n"
    );
    // And StreamOut maps them back.
    let out = out_of(&root, "/tmp/m/", &map);
    let owner = |p: &str| out.iter().find(|i| i.path == p).map(|i| (i.uid, i.gid));
    assert_eq!(owner("./root/d/f"), Some((0, 0)));
    assert_eq!(owner("./vcap/d/l"), Some((2000, 2000)));
    // Host root (the copied rootfs) is nobody inside, as `stat` shows it.
    let etc = out_of(&root, "/etc/passwd", &map);
    assert_eq!((etc[0].uid, etc[0].gid), (65534, 65534));
    assert_eq!(exec(&b, "stat -c %u /etc/passwd"), "65534\n");
}

#[test]
fn users_are_looked_up_in_the_container() {
    let (_b, root) = running(TestBundle::new("files-users"));
    let group = archive(&[raw(
        EntryType::Regular,
        "group",
        None,
        b"root:x:0:\nvcap:x:2000:\nstaff:x:50:vcap\n",
    )]);
    stream_in(&root, "/etc", &root_user(), &IdMap::identity(), &group[..]).expect("group");
    let vcap = lookup_user(&root, "vcap").expect("vcap");
    assert_eq!(
        vcap,
        User {
            uid: 2000,
            gid: 2000,
            home: "/home/vcap".into(),
            additional_gids: vec![50]
        }
    );
    assert_eq!(
        lookup_user(&root, "").expect("root"),
        lookup_user(&root, "root").expect("root")
    );
    assert_eq!(lookup_user(&root, "").expect("root").home, "/root");
    assert_eq!(lookup_user(&root, "2000").expect("uid").home, "/home/vcap");
    let ids = lookup_user(&root, "1234:5678").expect("uid:gid");
    assert_eq!((ids.uid, ids.gid, ids.home.as_str()), (1234, 5678, "/"));
    let err = lookup_user(&root, "no-such-user").expect_err("unknown");
    assert!(
        err.is_bad_input() && err.to_string().contains("no-such-user"),
        "{err}"
    );
    // The host's /etc/passwd is not consulted.
    assert!(std::fs::read_to_string("/etc/passwd")
        .expect("host passwd")
        .contains("root"));
    let err = lookup_user(&root, "daemon").expect_err("host-only user");
    assert!(matches!(err, FilesError::UnknownUser { .. }), "{err}");
}
