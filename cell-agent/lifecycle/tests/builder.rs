//! The real `lifecycle-builder` binary on temp directories with small shell
//! buildpacks: detection, supply/finalize, legacy compile, failures and
//! their exit statuses, the droplet's layout and the cache round trip.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lifecycle::buildpack::dir_name;

const BIN: &str = env!("CARGO_BIN_EXE_lifecycle-builder");

/// A staging container's directories in a temp dir.
struct Fixture {
    tmp: tempfile::TempDir,
}

/// One entry of a tarball.
#[derive(Debug)]
struct Entry {
    kind: tar::EntryType,
    mode: u32,
    link: Option<PathBuf>,
    data: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            tmp: tempfile::tempdir().expect("tmp"),
        };
        for d in ["app", "buildpacks"] {
            std::fs::create_dir(f.path(d)).expect("mkdir");
        }
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn app_file(&self, rel: &str, body: &str) {
        let p = self.path("app").join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }

    /// A buildpack of shell scripts under its key's directory; `nested`
    /// puts it one directory deeper, as a zip with a top-level dir does.
    fn buildpack(&self, key: &str, nested: bool, files: &[(&str, &str)]) -> PathBuf {
        let mut root = self.path("buildpacks").join(dir_name(key));
        if nested {
            root = root.join(format!("{key}-v1"));
        }
        for (rel, body) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
            if rel.starts_with("bin/") {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        root
    }

    fn run(&self, order: &[&str], skip_detect: bool) -> Output {
        let args = [
            format!("-buildDir={}", self.path("app").display()),
            format!("-buildpacksDir={}", self.path("buildpacks").display()),
            format!("-buildArtifactsCacheDir={}", self.path("cache").display()),
            format!("-outputDroplet={}", self.path("droplet").display()),
            format!(
                "-outputBuildArtifactsCache={}",
                self.path("output-cache").display()
            ),
            format!("-outputMetadata={}", self.path("result.json").display()),
            format!("-buildpackOrder={}", order.join(",")),
            format!("-skipDetect={skip_detect}"),
        ];
        Command::new(BIN)
            .args(args)
            .env("CF_STACK", "cflinuxfs4")
            .env("TMPDIR", self.tmp.path())
            .env_remove("HOME")
            .output()
            .expect("run lifecycle-builder")
    }

    fn result(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("result.json")).expect("result.json");
        serde_json::from_str(&text).expect("result json")
    }

    fn tgz(&self, name: &str) -> BTreeMap<String, Entry> {
        let file = File::open(self.path(name)).expect("open tgz");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut out = BTreeMap::new();
        for e in archive.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).expect("read");
            let entry = Entry {
                kind: e.header().entry_type(),
                mode: e.header().mode().expect("mode") & 0o7777,
                link: e.link_name().expect("link").map(|l| l.into_owned()),
                data,
            };
            out.insert(path.trim_end_matches('/').to_string(), entry);
        }
        out
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "builder failed ({}): stdout {} stderr {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

const RELEASE_WEB: &str =
    "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: ./release-web\\n'\n";

#[test]
fn detect_picks_the_second_of_two_buildpacks() {
    let f = Fixture::new();
    f.app_file("main.go", "package main\n");
    f.buildpack(
        "ruby_buildpack",
        false,
        &[
            ("bin/detect", "#!/bin/sh\necho ruby-says-no >&2\nexit 1\n"),
            ("bin/compile", "#!/bin/sh\ntouch \"$1/ruby-ran\"\n"),
            ("bin/release", RELEASE_WEB),
        ],
    );
    f.buildpack(
        "go_buildpack",
        true,
        &[
            ("bin/detect", "#!/bin/sh\n[ -f \"$1/main.go\" ] && echo Go && exit 0\nexit 1\n"),
            (
                "bin/compile",
                "#!/bin/sh\necho \"compiling on $CF_STACK\"\necho built > \"$1/go-built\"\necho cached > \"$2/go-cache\"\n",
            ),
            ("bin/release", RELEASE_WEB),
            ("VERSION", "1.9.4\n"),
        ],
    );
    let o = f.run(&["ruby_buildpack", "go_buildpack"], false);
    assert_success(&o);
    assert!(
        stdout(&o).contains("compiling on cflinuxfs4"),
        "script output passes through: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("ruby-says-no"), "{}", stderr(&o));

    let r = f.result();
    assert_eq!(r["lifecycle_type"], "buildpack");
    assert_eq!(r["lifecycle_metadata"]["buildpack_key"], "go_buildpack");
    assert_eq!(r["lifecycle_metadata"]["detected_buildpack"], "Go");
    assert_eq!(
        r["lifecycle_metadata"]["buildpacks"],
        serde_json::json!([{"key": "go_buildpack", "name": "Go", "version": "1.9.4"}])
    );
    assert_eq!(r["process_types"]["web"], "./release-web");
    assert_eq!(r["execution_metadata"], "");

    let droplet = f.tgz("droplet");
    assert!(droplet.contains_key("app/go-built"));
    assert!(
        !droplet.contains_key("app/ruby-ran"),
        "the declining buildpack did not run"
    );
    let cache = f.tgz("output-cache");
    assert_eq!(cache["final/go-cache"].data, b"cached\n");
}

#[test]
fn multi_buildpack_supply_and_finalize_with_droplet_layout() {
    let f = Fixture::new();
    f.app_file("index.html", "<html/>");
    f.app_file(".profile", "export FROM_PROFILE=1\n");
    f.app_file(".profile.d/app.sh", "export FROM_APP=1\n");
    std::fs::create_dir(f.path("app/bin")).expect("mkdir");
    f.app_file("bin/run", "#!/bin/sh\n");
    std::fs::set_permissions(
        f.path("app/bin/run"),
        std::fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    symlink("/etc/passwd", f.path("app/outside")).expect("symlink");
    symlink("index.html", f.path("app/home.html")).expect("symlink");
    // A cache from the previous staging.
    std::fs::create_dir_all(f.path("cache/final")).expect("mkdir");
    std::fs::write(f.path("cache/final/old"), "previous").expect("write");

    let supply = "#!/bin/sh\necho \"$@\" > \"$3/$4/args\"\necho supplied-$4 > \"$2/from-supply\"\nprintf 'processes:\\n- type: web\\n  command: supply-web\\n- type: side\\n  command: ./side\\n' > \"$3/$4/launch.yml\"\n";
    f.buildpack(
        "node",
        false,
        &[("bin/supply", supply), ("config.yml", "name: nodejs\n")],
    );
    let finalize = "#!/bin/sh\necho \"$@\" > \"$3/$4/finalize-args\"\necho 'export X=1' > \"$5/final.sh\"\ncat \"$2/old\" > \"$1/saw-old-cache\"\n";
    f.buildpack(
        "staticfile",
        false,
        &[
            ("bin/supply", supply),
            ("bin/finalize", finalize),
            ("bin/release", "#!/bin/sh\necho '--- {}'\n"),
            ("manifest.yml", "language: staticfile\nversion: 2.0.1\n"),
        ],
    );
    let o = f.run(&["node", "staticfile"], true);
    assert_success(&o);

    let r = f.result();
    let meta = &r["lifecycle_metadata"];
    assert_eq!(meta["buildpack_key"], "staticfile");
    assert_eq!(meta["detected_buildpack"], "staticfile");
    assert_eq!(
        meta["buildpacks"],
        serde_json::json!([
            {"key": "node", "name": "nodejs", "version": ""},
            {"key": "staticfile", "name": "staticfile", "version": "2.0.1"}
        ])
    );
    // No Procfile, an empty release: the supply launch.yml gives web.
    assert_eq!(r["process_types"]["web"], "supply-web");
    assert_eq!(r["process_types"]["side"], "./side");

    let d = f.tgz("droplet");
    for dir in [
        ".",
        "app",
        "deps",
        "deps/0",
        "deps/1",
        "profile.d",
        "tmp",
        "logs",
    ] {
        assert_eq!(d[dir].kind, tar::EntryType::Directory, "{dir}");
    }
    let info: serde_json::Value =
        serde_json::from_slice(&d["staging_info.yml"].data).expect("staging_info");
    assert_eq!(
        info,
        serde_json::json!({"detected_buildpack": "staticfile", "start_command": "supply-web"})
    );
    let args = String::from_utf8_lossy(&d["deps/0/args"].data).into_owned();
    let parts: Vec<&str> = args.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "{args}");
    assert!(parts[0].ends_with("/app"), "{args}");
    assert!(
        parts[1].ends_with(&format!("/cache/{}", dir_name("node"))),
        "{args}"
    );
    assert!(parts[2].ends_with("/deps"), "{args}");
    assert_eq!(parts[3], "0");
    let fin = String::from_utf8_lossy(&d["deps/1/finalize-args"].data).into_owned();
    let fin: Vec<&str> = fin.split_whitespace().collect();
    assert!(fin[1].ends_with("/cache/final") && fin[3] == "1" && fin[4].ends_with("/profile.d"));
    assert_eq!(d["profile.d/final.sh"].data, b"export X=1\n");
    assert_eq!(d["app/saw-old-cache"].data, b"previous");
    assert_eq!(d["app/.profile"].data, b"export FROM_PROFILE=1\n");
    assert!(d.contains_key("app/.profile.d/app.sh"));
    assert_eq!(d["app/bin/run"].mode, 0o750);
    assert_eq!(d["app/outside"].kind, tar::EntryType::Symlink);
    assert_eq!(
        d["app/outside"].link.as_deref(),
        Some(Path::new("/etc/passwd"))
    );
    assert!(
        d["app/outside"].data.is_empty(),
        "a symlink is never followed"
    );
    assert_eq!(
        d["app/home.html"].link.as_deref(),
        Some(Path::new("index.html"))
    );

    // The cache tgz round-trips: unpacked, it is the cache dir.
    let restored = f.path("restored");
    let gz = flate2::read::GzDecoder::new(File::open(f.path("output-cache")).expect("open"));
    tar::Archive::new(gz).unpack(&restored).expect("unpack");
    for rel in [
        "final/old",
        "final/from-supply",
        &format!("{}/from-supply", dir_name("node")),
    ] {
        assert_eq!(
            std::fs::read(restored.join(rel)).expect("restored"),
            std::fs::read(f.path("cache").join(rel)).expect("original"),
            "{rel}"
        );
    }
}

#[test]
fn legacy_compile_and_procfile_wins() {
    let f = Fixture::new();
    f.app_file(
        "Procfile",
        "web: ./procfile-web --port $PORT\nworker: ./work\n",
    );
    f.buildpack(
        "legacy",
        false,
        &[
            ("bin/compile", "#!/bin/sh\necho \"$#:$2\" > \"$1/compile-args\"\n"),
            (
                "bin/release",
                "#!/bin/sh\nprintf 'default_process_types:\\n  web: ./release-web\\n  console: ./console\\n'\n",
            ),
        ],
    );
    let o = f.run(&["legacy"], true);
    assert_success(&o);
    let r = f.result();
    assert_eq!(
        r["process_types"],
        serde_json::json!({"web": "./procfile-web --port $PORT", "worker": "./work", "console": "./console"})
    );
    let d = f.tgz("droplet");
    let args = String::from_utf8_lossy(&d["app/compile-args"].data).into_owned();
    assert!(
        args.starts_with("2:") && args.trim_end().ends_with("/cache/final"),
        "{args}"
    );
    assert_eq!(d["deps/0"].kind, tar::EntryType::Directory);
}

/// Runs a failing staging and returns its exit status and stderr.
fn failure(order: &[&str], skip: bool, setup: impl Fn(&Fixture)) -> (i32, String) {
    let f = Fixture::new();
    setup(&f);
    let o = f.run(order, skip);
    assert!(!f.path("result.json").exists(), "no result on failure");
    assert!(!f.path("droplet").exists(), "no droplet on failure");
    (o.status.code().expect("exit code"), stderr(&o))
}

#[test]
fn failures_exit_with_diegos_statuses_and_one_clear_line() {
    let (code, err) = failure(&["a", "b"], false, |f| {
        for k in ["a", "b"] {
            f.buildpack(k, false, &[("bin/detect", "#!/bin/sh\nexit 1\n")]);
        }
    });
    assert_eq!(code, 222, "{err}");
    assert!(
        err.contains("None of the buildpacks detected a compatible application"),
        "{err}"
    );

    let (code, err) = failure(&["bad"], true, |f| {
        f.buildpack(
            "bad",
            false,
            &[
                ("bin/compile", "#!/bin/sh\necho boom >&2\nexit 1\n"),
                ("bin/release", RELEASE_WEB),
            ],
        );
    });
    assert_eq!(code, 223, "{err}");
    assert!(
        err.contains("Failed to compile droplet: buildpack bad bin/compile exited with status 1"),
        "{err}"
    );
    assert!(err.contains("boom"), "script stderr passes through: {err}");

    let (code, err) = failure(&["rel"], true, |f| {
        f.buildpack(
            "rel",
            false,
            &[
                ("bin/compile", "#!/bin/sh\n"),
                ("bin/release", "#!/bin/sh\nexit 4\n"),
            ],
        );
    });
    assert_eq!(code, 224, "{err}");
    assert!(
        err.contains("buildpack rel bin/release exited with status 4"),
        "{err}"
    );

    let (code, err) = failure(&["nosupply", "last"], true, |f| {
        f.buildpack("nosupply", false, &[("bin/compile", "#!/bin/sh\n")]);
        f.buildpack(
            "last",
            false,
            &[("bin/compile", "#!/bin/sh\n"), ("bin/release", RELEASE_WEB)],
        );
    });
    assert_eq!(code, 225, "{err}");
    assert!(
        err.contains("buildpack nosupply has no bin/supply"),
        "{err}"
    );

    let (code, err) = failure(&["fin"], true, |f| {
        f.buildpack(
            "fin",
            false,
            &[
                ("bin/finalize", "#!/bin/sh\nexit 7\n"),
                ("bin/release", RELEASE_WEB),
            ],
        );
    });
    assert_eq!(code, 226, "{err}");
    assert!(
        err.contains(
            "Failed to run finalize script: buildpack fin bin/finalize exited with status 7"
        ),
        "{err}"
    );

    let (code, err) = failure(&["absent"], true, |_| {});
    assert_eq!(code, 222, "{err}");
    assert!(err.contains("buildpack absent"), "{err}");

    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [vec!["-nope=1"], vec!["-skipDetect=perhaps"], vec!["extra"]] {
        let o = Command::new(BIN).args(&args).output().expect("run");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
}
