//! A developer's `cfl push` through the whole platform on one machine:
//! controller-lite with the Diego scheduler, two real cells (each a
//! `cell-agent run` on its own gardend). The staging Task is auctioned to a
//! cell, which downloads the app package, an admin buildpack and the
//! buildpack lifecycle into a fresh container and runs the builder; the
//! droplet goes back to the controller, the web process becomes an LRP
//! whose two instances run on the two cells and answer with what the
//! buildpack's `finalize` and `profile.d` put in the droplet. A new version
//! that crashes fails its push while the old instances keep serving; an app
//! the buildpack does not detect fails its push with the lifecycle's reason.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::cell::start_cells;
use common::controller::{Ctl, ADMIN_PASSWORD};

const LONG: Duration = Duration::from_secs(120);

/// A buildpack in the supply/finalize style: detects apps with `app.sh`,
/// leaves a marker in its deps dir, writes a profile.d script and a file
/// into the app, and releases a start command that uses both.
fn write_buildpack(zip_path: &Path) {
    let scripts: [(&str, &str); 4] = [
        (
            "bin/detect",
            "#!/bin/sh\n[ -f \"$1/app.sh\" ] || exit 1\necho e2e-sh\n",
        ),
        (
            "bin/supply",
            "#!/bin/sh\necho \"-----> e2e buildpack supplying into $3/$4\"\n\
             echo supplied > \"$3/$4/marker\"\n",
        ),
        (
            "bin/finalize",
            "#!/bin/sh\nset -e\necho \"-----> e2e buildpack finalizing\"\n\
             [ -f \"$3/$4/marker\" ] || { echo 'supply left no marker' >&2; exit 1; }\n\
             echo 'export GREETING=from-buildpack' > \"$5/greeting.sh\"\n\
             echo compiled > \"$1/compiled.txt\"\n",
        ),
        (
            "bin/release",
            "#!/bin/sh\necho '---'\necho 'default_process_types:'\n\
             echo '  web: exec nc -ll -p $PORT -e /bin/echo \"$GREETING $(cat compiled.txt)\"'\n",
        ),
    ];
    let mut w = zip::ZipWriter::new(std::fs::File::create(zip_path).expect("zip"));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for (name, body) in scripts {
        w.start_file(name, opts).expect("zip entry");
        w.write_all(body.as_bytes()).expect("zip write");
    }
    w.finish().expect("zip finish");
}

fn write_app(dir: &Path, name: &str, detectable: bool) {
    std::fs::create_dir_all(dir).expect("app dir");
    if detectable {
        std::fs::write(dir.join("app.sh"), "#!/bin/sh\necho hi\n").expect("app.sh");
    } else {
        std::fs::write(dir.join("README"), "no app.sh here\n").expect("readme");
    }
    std::fs::write(
        dir.join("manifest.yml"),
        format!(
            "applications:\n- name: {name}\n  instances: 2\n  memory: 64M\n  disk_quota: 64M\n"
        ),
    )
    .expect("manifest");
}

/// Runs `cfl` with its own HOME in `cwd`.
async fn cfl(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(common::binary("cfl", "cfl"))
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run cfl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn cfl_ok(home: &Path, cwd: &Path, args: &[&str]) -> String {
    let o = cfl(home, cwd, args).await;
    let out = text(&o);
    assert!(o.status.success(), "cfl {args:?} failed: {out}");
    out
}

/// `cfl push` in `dir` with the test's timeouts and `extra` arguments.
async fn push(home: &Path, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "push",
        "--staging-timeout",
        "120",
        "--startup-timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    cfl(home, dir, &args).await
}

/// What the instance at `address:port` answers.
fn answer(address: &str, port: u16) -> String {
    let mut stream = TcpStream::connect((address, port))
        .unwrap_or_else(|e| panic!("connect {address}:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn cfl_push_stages_on_a_cell_and_runs_on_both() {
    common::assert_root();
    let pid = std::process::id();
    let ctl = Ctl::start(5, 30).await;
    let cells = start_cells(&ctl, "push", 2..4).await;
    let ids: Vec<String> = cells.iter().map(|c| c.cell_id.clone()).collect();

    let work = tempfile::tempdir().expect("work dir");
    let home = work.path();
    cfl_ok(
        home,
        home,
        &[
            "login",
            "-a",
            &ctl.base,
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ],
    )
    .await;
    cfl_ok(home, home, &["target", "-o", "default", "-s", "default"]).await;
    let zip = home.join("e2e-buildpack.zip");
    write_buildpack(&zip);
    cfl_ok(
        home,
        home,
        &[
            "create-buildpack",
            "e2e_buildpack",
            zip.to_str().expect("utf-8"),
            "1",
        ],
    )
    .await;

    let name = format!("hello-{pid}");
    let app = home.join("app");
    write_app(&app, &name, true);
    let started = Instant::now();
    let o = push(home, &app, &[]).await;
    let out = text(&o);
    if !o.status.success() {
        // The whole staging log, also lines that reached the controller
        // after the build failed.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logs = text(&cfl(home, home, &["logs", &name, "--recent"]).await);
        panic!("push failed:\n{out}\n--- cfl logs --recent ---\n{logs}");
    }
    eprintln!("push took {:?}:\n{out}", started.elapsed());
    for want in [
        "-----> e2e buildpack supplying",
        "-----> e2e buildpack finalizing",
        &format!("App {name} is running"),
    ] {
        assert!(out.contains(want), "push output lacks {want:?}:\n{out}");
    }

    let web = ctl.web_process(&name).await;
    let running = common::wait_for("2 RUNNING instances", LONG, || async {
        let r = ctl.running(&web).await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let mut on: Vec<&str> = running.iter().map(|r| r.cell_id.as_str()).collect();
    on.sort_unstable();
    assert_eq!(on, [ids[0].as_str(), ids[1].as_str()], "one per cell");
    for r in &running {
        assert_eq!(
            answer(&r.address, r.port),
            "from-buildpack compiled",
            "instance {} on {}",
            r.index,
            r.cell_id
        );
    }
    let out = cfl_ok(home, home, &["app", &name]).await;
    for want in [
        "2/2",
        "buildpacks:        e2e_buildpack",
        "start command:  exec nc -ll",
    ] {
        assert!(out.contains(want), "cfl app lacks {want:?}:\n{out}");
    }

    // `cfl restart` rolls the instances over: one of the two serves
    // throughout, then both run the new version.
    let fewest = {
        let watch = async {
            let mut fewest = i64::MAX;
            loop {
                fewest = fewest.min(ctl.running_all_versions(&name).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = ctl.web_process(&name).await;
                if now != web && ctl.running(&now).await.len() == 2 {
                    return fewest;
                }
            }
        };
        let restart = async {
            cfl_ok(home, home, &["restart", &name]).await;
        };
        let (fewest, ()) = tokio::join!(
            async {
                tokio::time::timeout(LONG, watch)
                    .await
                    .expect("restart rolled over")
            },
            restart
        );
        fewest
    };
    assert!(
        fewest >= 1,
        "a restart of 2 instances left {fewest} running"
    );
    let web = ctl.web_process(&name).await;
    let running = ctl.running(&web).await;
    for r in &running {
        assert_eq!(answer(&r.address, r.port), "from-buildpack compiled");
    }

    // A new version that crashes: the push says so and fails, and the
    // rolling restart leaves the old instances serving.
    let o = push(home, &app, &["-c", "exit 1"]).await;
    let out = text(&o);
    assert!(!o.status.success(), "push of a crashing version: {out}");
    assert!(out.contains("the new version crashed"), "{out}");
    for r in &running {
        assert_eq!(
            answer(&r.address, r.port),
            "from-buildpack compiled",
            "old instance {} on {} after the failed rollout",
            r.index,
            r.cell_id
        );
    }

    // Nothing detects this app: the build fails with the lifecycle's
    // reason and push exits non-zero.
    let other = home.join("other");
    let other_name = format!("nodetect-{pid}");
    write_app(&other, &other_name, false);
    let o = push(home, &other, &[]).await;
    let out = text(&o);
    assert!(!o.status.success(), "push of an undetectable app: {out}");
    for want in ["None of the buildpacks detected", "NoAppDetectedError"] {
        assert!(
            out.contains(want),
            "the reason ({want:?}) reaches the developer:\n{out}"
        );
    }

    drop(cells);
    ctl.stop().await;
}
