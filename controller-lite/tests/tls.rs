//! https serving: with `tls_cert`/`tls_key` the controller speaks TLS (and
//! only TLS) on its port, advertises https links, and refuses to start with
//! an unusable certificate or key.

mod common;

use anyhow::{ensure, Context, Result};
use common::{install_tls, test_pki, InProcess};
use controller_lite::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() -> Result<()> {
    let pki = tempfile::tempdir()?;
    let (ca, cert, key) = test_pki(pki.path())?;
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    // The config's top-level keys go before the first table.
    let c = InProcess::start_with_top(&extra, "").await?;
    let addr = c.controller().addr;
    install_tls();
    let ca_cert = reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?;
    let trusting = reqwest::Client::builder()
        .tls_certs_only([ca_cert])
        .build()?;
    for host in ["127.0.0.1", "localhost"] {
        let root: serde_json::Value = trusting
            .get(format!("https://{host}:{}/", addr.port()))
            .send()
            .await?
            .json()
            .await?;
        let login = root["links"]["login"]["href"].as_str().context("login")?;
        ensure!(login.starts_with("https://"), "{root}");
    }
    let token = common::token(&format!("https://{addr}"), "admin", "admin-pw").await;
    ensure!(
        token.is_err(),
        "a client without the CA refuses the certificate"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/v3/info"))
        .send()
        .await;
    ensure!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain http is not served on the TLS port"
    );
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_certificate_or_key_stops_the_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, cert, key) = test_pki(dir.path())?;
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file")?;
    let missing = dir.path().join("missing.pem");
    for (c, k, want) in [
        (&missing, &key, "missing.pem"),
        (&garbage, &key, "garbage.pem"),
        (&cert, &garbage, "garbage.pem"),
        (&key, &key, "server.key"),
    ] {
        let text = common::config_toml(&dir.path().join("data"), "");
        let text = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n{text}",
            c.display(),
            k.display()
        );
        let config = Config::parse(&text)?;
        match controller_lite::server::start(config).await {
            Ok(ctl) => {
                ctl.shutdown().await;
                anyhow::bail!("started with cert {} key {}", c.display(), k.display());
            }
            Err(e) => ensure!(e.to_string().contains(want), "{e}"),
        }
    }
    Ok(())
}
