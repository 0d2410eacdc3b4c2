//! A session against a controller whose access tokens live 2 seconds:
//! commands and a long `cfl logs` follow keep working by refreshing (once
//! per 401) with the stored refresh token; `--recent` shows the newest
//! lines; follow prints only new lines and ends when the app is deleted or
//! on ^C; a refresh token that no longer works says "not logged in".

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use cfl::client::Client;
use common::{cfl, cfl_command, ok, post_logs, stderr, Cell, Controller};

fn config(home: &Path) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        home.join(".cfl/config.json"),
    )?)?)
}

/// Follows `cfl logs NAME`, sending each stdout line to a channel.
fn follow(home: &Path, name: &str) -> Result<(Child, mpsc::Receiver<String>)> {
    let mut child = cfl_command(home, home, &["logs", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((child, rx))
}

/// Lines until one contains `want` (or the time is up).
fn until(rx: &mpsc::Receiver<String>, want: &str, secs: u64) -> Result<Vec<String>> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(want);
                seen.push(line);
                if done {
                    return Ok(seen);
                }
            }
            Err(_) => break,
        }
    }
    bail!("no line with {want:?} in {secs}s; saw {seen:?}")
}

fn wait_exit(child: &mut Child, secs: u64) -> Result<std::process::ExitStatus> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("cfl logs did not exit in {secs}s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn short_lived_tokens_recent_and_follow() -> Result<()> {
    let ctl = Controller::start_with("", "access_token_ttl_secs = 2")?;
    let key = ctl.internal_key()?;
    let cell = Cell::start(&ctl.base, &key, false)?;
    let home = tempfile::tempdir()?;
    let h = home.path();
    ok(
        h,
        h,
        &["login", "-a", &ctl.base, "-u", "admin", "-p", "admin-pw"],
    )?;
    ensure!(
        config(h)?["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "the refresh token is stored"
    );
    let app = h.join("app");
    std::fs::create_dir_all(&app)?;
    std::fs::write(app.join("app.sh"), "#!/bin/sh\n")?;
    ok(
        h,
        &app,
        &["push", "talker", "-t", "60", "--staging-timeout", "60"],
    )?;
    let guid = cfl::commands::find_app(&mut Client::load(h.join(".cfl/config.json"))?, "talker")?
        ["guid"]
        .as_str()
        .context("guid")?
        .to_owned();

    // A 401 for an expired access token: refresh once, retry, save.
    let mut client = Client::load(h.join(".cfl/config.json"))?;
    let before = client.config.access_token.clone();
    std::thread::sleep(Duration::from_millis(3100));
    let apps = client.list("/v3/apps")?;
    ensure!(apps.len() == 1, "the request went through after a refresh");
    ensure!(client.config.access_token != before, "a new access token");
    ensure!(
        config(h)?["access_token"] == client.config.access_token.as_str(),
        "and it was saved"
    );

    // --recent: the newest 1000 lines, oldest of them first.
    let many: Vec<String> = (0..1200).map(|i| format!("line {i:04}")).collect();
    post_logs(&ctl.base, &key, &guid, &many)?;
    let out = ok(h, h, &["logs", "talker", "--recent"])?;
    let shown: Vec<&str> = out.lines().filter(|l| l.contains("line ")).collect();
    ensure!(shown.len() == 1000, "{} lines", shown.len());
    ensure!(
        shown[0].ends_with("line 0200") && shown[999].ends_with("line 1199"),
        "first {:?}, last {:?}",
        shown[0],
        shown[999]
    );
    ensure!(shown[0].starts_with("[APP/PROC/WEB/0] OUT"), "{}", shown[0]);

    // Follow: only new lines, across several token lifetimes, until the
    // app is deleted.
    let (mut child, rx) = follow(h, "talker")?;
    std::thread::sleep(Duration::from_millis(1500));
    post_logs(&ctl.base, &key, &guid, &["new 1".to_owned()])?;
    let seen = until(&rx, "new 1", 15)?;
    ensure!(
        seen.iter().all(|l| !l.contains("line ")),
        "old lines are not repeated: {seen:?}"
    );
    std::thread::sleep(Duration::from_millis(4500));
    post_logs(&ctl.base, &key, &guid, &["new 2".to_owned()])?;
    until(&rx, "new 2", 15).context("still following after the token expired twice")?;
    ok(h, h, &["delete", "talker", "-f"])?;
    let status = wait_exit(&mut child, 15)?;
    ensure!(
        status.success(),
        "ends cleanly when the app is deleted: {status:?}"
    );
    until(&rx, "was deleted", 5)?;

    // ^C ends following.
    ok(
        h,
        &app,
        &["push", "other", "-t", "60", "--staging-timeout", "60"],
    )?;
    let (mut child, _rx) = follow(h, "other")?;
    std::thread::sleep(Duration::from_millis(800));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    ensure!(killed.success());
    let status = wait_exit(&mut child, 10)?;
    ensure!(status.code() == Some(130), "interrupted: {status:?}");

    // A refresh token that no longer works: "not logged in", no loop.
    let mut cfg = config(h)?;
    cfg["refresh_token"] = "garbage".into();
    cfg["access_token"] = "garbage".into();
    std::fs::write(h.join(".cfl/config.json"), cfg.to_string())?;
    let o = cfl(h, h, &["apps"])?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("not logged in"),
        "{}",
        stderr(&o)
    );
    drop(cell);
    Ok(())
}
