//! Egress rules from the config reach the Diego records: staging tasks get
//! `[staging] egress_rules`, run-task tasks and app processes get
//! `[apps] egress_rules` (Cloud Foundry's default security groups when
//! absent).

mod common;

use anyhow::{ensure, Context, Result};
use common::{app_with_droplet, build, push_bits, Api, InProcess};
use controller_lite::bbs::records;
use controller_lite::config::default_egress_rules;
use diego::models::{SecurityGroupRule, SecurityProtocol, Task};
use serde_json::json;

const STAGING_RULES: &str = r#"
[[staging.egress_rules]]
protocol = "tcp"
destinations = ["10.0.5.0/24"]
ports = [5000]
"#;

async fn bbs_tasks(c: &InProcess) -> Result<Vec<Task>> {
    let bbs = c
        .controller()
        .state
        .bbs
        .clone()
        .context("diego scheduler")?;
    Ok(bbs.db().read(records::all_tasks).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_tasks_run_tasks_and_processes_carry_their_rules() -> Result<()> {
    let c = InProcess::start(STAGING_RULES).await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let (_, pkg) = push_bits(&api, &space, "egress-stager").await?;
    let staging_guid = build(&api, &pkg).await?;
    let mut registry = SecurityGroupRule::new(SecurityProtocol::Tcp, &["10.0.5.0/24"]);
    registry.ports = vec![5000];

    let tasks = bbs_tasks(&c).await?;
    let staging = tasks
        .iter()
        .find(|t| t.task_guid == staging_guid)
        .context("staging task in the BBS")?;
    ensure!(
        staging.definition.egress_rules == vec![registry],
        "staging rules: {:?}",
        staging.definition.egress_rules
    );

    let app = app_with_droplet(&c, &api, "egress-app").await?;
    let (s, body) = api
        .post(&format!("/v3/apps/{app}/tasks"), json!({"command": "echo"}))
        .await?;
    ensure!(s == 202, "task: {s} {body}");
    let task_guid = body["guid"].as_str().context("task guid")?.to_owned();
    let tasks = bbs_tasks(&c).await?;
    let run_task = tasks
        .iter()
        .find(|t| t.task_guid == task_guid)
        .context("run-task task in the BBS")?;
    ensure!(run_task.definition.egress_rules == default_egress_rules());

    let (s, body) = api
        .post(&format!("/v3/apps/{app}/actions/start"), json!({}))
        .await?;
    ensure!(s == 200, "start: {s} {body}");
    let bbs = c
        .controller()
        .state
        .bbs
        .clone()
        .context("diego scheduler")?;
    let desired = bbs.db().read(records::all_desired).await?;
    let web = desired
        .iter()
        .find(|d| d.annotation.contains(&app))
        .context("the app's desired LRP")?;
    ensure!(web.egress_rules == default_egress_rules());
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_bad_rule_in_the_config_stops_the_start() -> Result<()> {
    let bad = "[[apps.egress_rules]]\nprotocol = \"icmp\"\ndestinations = [\"10.0.0.1\"]\n";
    let err = match InProcess::start(bad).await {
        Ok(c) => {
            c.stop().await;
            anyhow::bail!("started with an ICMP rule without icmp_info")
        }
        Err(e) => e.to_string(),
    };
    ensure!(
        err.contains("apps.egress_rules[0] (icmp to 10.0.0.1)") && err.contains("needs icmp_info"),
        "{err}"
    );
    Ok(())
}
