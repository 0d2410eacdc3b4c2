//! `cfl` against the real controller-lite: login, target, two pushes
//! (.cfignore, resource matching), everyday commands, and failures.

mod common;

use std::fs;
use std::path::Path;

use anyhow::{ensure, Result};
use common::{cfl, ok, stderr, stdout, Cell, Controller};

fn login(home: &Path, ctl: &Controller) -> Result<()> {
    let out = ok(
        home,
        home,
        &["login", "-a", &ctl.base, "-u", "admin", "-p", "admin-pw"],
    )?;
    ensure!(
        out.contains("Logged in") && out.contains("default"),
        "{out}"
    );
    Ok(())
}

fn write_app(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir.join("lib"))?;
    fs::create_dir_all(dir.join("logs"))?;
    fs::create_dir_all(dir.join(".git"))?;
    fs::write(dir.join("app.sh"), "#!/bin/sh\necho hi\n")?;
    fs::write(dir.join("lib/data.txt"), "some data\n")?;
    fs::write(dir.join("logs/debug.log"), "ignored\n")?;
    fs::write(dir.join("secret.key"), "ignored\n")?;
    fs::write(dir.join(".git/HEAD"), "ignored\n")?;
    fs::write(dir.join(".cfignore"), "logs/\n*.key\n")?;
    fs::write(
        dir.join("manifest.yml"),
        "applications:\n- name: hello\n  instances: 2\n  memory: 128M\n  env:\n    GREETING: hi\n",
    )?;
    Ok(())
}

fn write_buildpack_zip(path: &Path) -> Result<()> {
    let mut w = zip::ZipWriter::new(fs::File::create(path)?);
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for script in ["bin/detect", "bin/supply", "bin/finalize", "bin/release"] {
        w.start_file(script, opts)?;
        std::io::Write::write_all(&mut w, b"#!/bin/sh\nexit 0\n")?;
    }
    w.finish()?;
    Ok(())
}

#[test]
fn login_target_push_and_everyday_commands() -> Result<()> {
    let ctl = Controller::start()?;
    let cell = Cell::start(&ctl.base, &ctl.internal_key()?, false)?;
    let home = tempfile::tempdir()?;
    let h = home.path();
    login(h, &ctl)?;
    let cfg = h.join(".cfl/config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&cfg)?.permissions());
    ensure!(mode & 0o777 == 0o600, "config mode {mode:o}");
    let out = ok(h, h, &["target", "-o", "default", "-s", "default"])?;
    ensure!(out.contains("space:        default"), "{out}");

    let app = h.join("app");
    write_app(&app)?;
    let out = ok(
        h,
        &app,
        &["push", "--startup-timeout", "60", "--staging-timeout", "60"],
    )?;
    ensure!(
        out.contains("0 of 2 files"),
        "first push matched nothing: {out}"
    );
    ensure!(
        out.contains("Fake buildpack compiling"),
        "staging output: {out}"
    );
    ensure!(
        out.contains("2 running") && out.contains("App hello is running"),
        "{out}"
    );
    let packages = cell
        .log
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .packages
        .clone();
    ensure!(
        packages == [vec!["app.sh".to_owned(), "lib/data.txt".to_owned()]],
        "{packages:?}"
    );

    let out = ok(h, &app, &["push", "hello", "-t", "60"])?;
    ensure!(
        out.contains("2 of 2 files") && out.contains("Uploading 0 files"),
        "{out}"
    );

    let out = ok(h, h, &["apps"])?;
    ensure!(
        out.contains("hello")
            && out.contains("started")
            && out.contains("web:2/2")
            && out.contains("hello.apps.cfl.internal"),
        "{out}"
    );
    let out = ok(h, h, &["app", "hello"])?;
    ensure!(
        out.contains("instances:      2/2") && out.contains("128M"),
        "{out}"
    );
    ok(h, h, &["set-env", "hello", "COLOR", "blue"])?;
    let out = ok(h, h, &["env", "hello"])?;
    ensure!(
        out.contains("GREETING: hi") && out.contains("COLOR: blue"),
        "{out}"
    );
    let out = ok(h, h, &["scale", "hello", "-i", "3", "-m", "256M"])?;
    ensure!(out.contains("3 instances") && out.contains("256M"), "{out}");
    let out = ok(h, h, &["routes"])?;
    ensure!(
        out.contains("hello.apps.cfl.internal") && out.contains("hello"),
        "{out}"
    );
    let out = ok(h, h, &["stacks"])?;
    ensure!(out.contains("cflinuxfs4"), "{out}");
    let out = ok(h, h, &["buildpacks"])?;
    ensure!(out.contains("position"), "{out}");
    let out = ok(h, h, &["apps", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(v[0]["name"] == "hello", "{v}");
    let out = ok(h, h, &["logs", "hello", "--recent"])?;
    ensure!(
        out.contains("[STG/0] OUT -----> Fake buildpack compiling"),
        "{out}"
    );
    let out = ok(h, h, &["stop", "hello"])?;
    ensure!(out.contains("is stopped"), "{out}");
    let out = ok(h, h, &["start", "hello"])?;
    ensure!(out.contains("is started"), "{out}");
    let out = ok(h, h, &["restart", "hello"])?;
    ensure!(out.contains("App hello is started"), "{out}");
    // The restart replaced the instances; the cell reports them running again.
    let mut out = String::new();
    for _ in 0..50 {
        out = ok(h, h, &["app", "hello"])?;
        if out.contains("instances:      3/3") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ensure!(out.contains("instances:      3/3"), "running again: {out}");
    let o = cfl(h, h, &["restart", "nope"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("App 'nope' not found"),
        "{}",
        stderr(&o)
    );

    let bp = h.join("go_buildpack.zip");
    write_buildpack_zip(&bp)?;
    let bp_path = bp.display().to_string();
    let out = ok(h, h, &["create-buildpack", "go_bp", &bp_path, "1"])?;
    ensure!(
        out.contains("Created buildpack go_bp at position 1: READY"),
        "{out}"
    );
    let out = ok(h, h, &["buildpacks", "--json"])?;
    let bps: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(
        bps[0]["name"] == "go_bp"
            && bps[0]["state"] == "READY"
            && bps[0]["filename"] == "go_buildpack.zip",
        "{bps}"
    );
    let out = ok(h, h, &["buildpacks"])?;
    ensure!(out.contains("go_bp"), "{out}");
    let o = cfl(h, h, &["create-buildpack", "go_bp", &bp_path, "2"])?;
    ensure!(o.status.code() == Some(1), "a second go_bp is refused");
    let o = cfl(h, h, &["create-buildpack", "other_bp", "/no/such.zip", "1"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("/no/such.zip"),
        "{}",
        stderr(&o)
    );
    let out = ok(
        h,
        h,
        &[
            "run-task",
            "hello",
            "echo migrate",
            "--name-of-task",
            "migrate",
        ],
    )?;
    ensure!(out.contains("migrate"), "{out}");
    let out = ok(h, h, &["tasks", "hello"])?;
    ensure!(
        out.contains("migrate") && out.contains("echo migrate"),
        "{out}"
    );
    let out = ok(
        h,
        h,
        &[
            "map-route",
            "hello",
            "apps.cfl.internal",
            "--hostname",
            "extra",
        ],
    )?;
    ensure!(out.contains("extra.apps.cfl.internal"), "{out}");
    let out = ok(h, h, &["app", "hello"])?;
    ensure!(out.contains("extra.apps.cfl.internal"), "{out}");
    ok(h, h, &["delete", "hello", "-f"])?;
    let o = cfl(h, h, &["app", "hello"])?;
    ensure!(o.status.code() == Some(1), "deleted app is gone");
    drop(cell);
    Ok(())
}

#[test]
fn failures_are_clear_and_exit_1() -> Result<()> {
    let ctl = Controller::start()?;
    let cell = Cell::start(&ctl.base, &ctl.internal_key()?, true)?;
    let home = tempfile::tempdir()?;
    let h = home.path();

    let o = cfl(
        h,
        h,
        &["login", "-a", &ctl.base, "-u", "admin", "-p", "wrong"],
    )?;
    ensure!(o.status.code() == Some(1), "wrong password: {:?}", o.status);
    ensure!(stderr(&o).contains("Bad credentials"), "{}", stderr(&o));

    let o = cfl(h, h, &["apps"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("not logged in"),
        "{}",
        stderr(&o)
    );

    login(h, &ctl)?;
    let o = cfl(h, h, &["app", "nope"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("App 'nope' not found"),
        "{}",
        stderr(&o)
    );

    let bad = h.join("bad");
    fs::create_dir_all(&bad)?;
    fs::write(
        bad.join("manifest.yml"),
        "applications:\n- name: [unclosed\n",
    )?;
    let o = cfl(h, &bad, &["push"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("not valid YAML"),
        "{}",
        stderr(&o)
    );

    let app = h.join("app");
    write_app(&app)?;
    let o = cfl(h, &app, &["push", "-t", "30", "--staging-timeout", "60"])?;
    ensure!(
        o.status.code() == Some(1),
        "staging failure exits 1: {}",
        stdout(&o)
    );
    ensure!(
        stdout(&o).contains("No buildpack detected"),
        "STG lines: {}",
        stdout(&o)
    );
    ensure!(
        stderr(&o).contains("staging failed") && stderr(&o).contains("NoAppDetectedError"),
        "{}",
        stderr(&o)
    );
    drop(cell);
    Ok(())
}
