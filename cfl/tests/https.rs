//! `cfl` against controller-lite served over https with a certificate from
//! a test CA: an untrusted certificate fails clearly; `--skip-ssl-validation`
//! and `--ca-cert` (or `CFL_CA_CERT`) work for login and push, and are kept
//! for later commands.

mod common;

use std::fs;

use anyhow::{ensure, Result};
use common::{cfl, cfl_command, ok, stderr, test_pki, Cell, Controller};

fn write_app(dir: &std::path::Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("app.sh"), "#!/bin/sh\necho hi\n")?;
    fs::write(
        dir.join("manifest.yml"),
        "applications:\n- name: secure\n  memory: 64M\n",
    )?;
    Ok(())
}

#[test]
fn login_and_push_over_https() -> Result<()> {
    let pki = tempfile::tempdir()?;
    let (ca, cert, key) = test_pki(pki.path())?;
    let top = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let ctl = Controller::start_with(&top, "")?;
    ensure!(ctl.base.starts_with("https://"), "{}", ctl.base);
    let cell = Cell::start(&ctl.base, &ctl.internal_key()?, false)?;
    let login = ["login", "-a", &ctl.base, "-u", "admin", "-p", "admin-pw"];

    // Without a way to trust the certificate: a clear failure.
    let home = tempfile::tempdir()?;
    let h = home.path();
    let o = cfl(h, h, &login)?;
    ensure!(o.status.code() == Some(1), "untrusted: {:?}", o.status);
    let err = stderr(&o);
    ensure!(
        err.contains("not trusted")
            && err.contains("--skip-ssl-validation")
            && err.contains("--ca-cert"),
        "{err}"
    );

    // --skip-ssl-validation: login, and push later without the flag.
    let skip = tempfile::tempdir()?;
    let s = skip.path();
    let mut args = login.to_vec();
    args.push("--skip-ssl-validation");
    ok(s, s, &args)?;
    let app = s.join("app");
    write_app(&app)?;
    let out = ok(s, &app, &["push", "-t", "60", "--staging-timeout", "60"])?;
    ensure!(out.contains("App secure is running"), "{out}");

    // --ca-cert: the CA is kept (as an absolute path) for later commands.
    let with_ca = tempfile::tempdir()?;
    let w = with_ca.path();
    let mut args = login.to_vec();
    let ca_arg = ca.display().to_string();
    args.extend(["--ca-cert", &ca_arg]);
    ok(w, w, &args)?;
    let out = ok(w, w, &["apps"])?;
    ensure!(out.contains("secure"), "{out}");
    let out = ok(w, w, &["logs", "secure", "--recent"])?;
    ensure!(out.contains("[STG/0]"), "{out}");

    // CFL_CA_CERT does the same from the environment.
    let env_home = tempfile::tempdir()?;
    let e = env_home.path();
    let o = cfl_command(e, e, &login).env("CFL_CA_CERT", &ca).output()?;
    ensure!(o.status.success(), "{}", stderr(&o));
    let o = cfl_command(e, e, &["app", "secure"])
        .env("CFL_CA_CERT", &ca)
        .output()?;
    ensure!(o.status.success(), "{}", stderr(&o));

    // A CA file that is not one fails clearly.
    let bad = pki.path().join("bad.pem");
    fs::write(&bad, "not a certificate")?;
    let o = cfl_command(e, e, &["apps"])
        .env("CFL_CA_CERT", &bad)
        .output()?;
    ensure!(
        o.status.code() == Some(1) && stderr(&o).contains("CA certificate file"),
        "{}",
        stderr(&o)
    );
    drop(cell);
    Ok(())
}
