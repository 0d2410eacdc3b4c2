//! Egress rules reach garden: a task's rules become NetOut rules in the
//! container's nft chain (read back with `nft`), and a bad rule fails the
//! container with an error naming it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{request, sh, Cell};
use diego::models::{PortRange, SecurityGroupRule, SecurityProtocol};

const LONG: Duration = Duration::from_secs(60);

/// garden's nft table of this cell's daemon (from its config).
fn garden_table(cell: &Cell) -> String {
    let config =
        std::fs::read_to_string(cell.garden.dir.path().join("garden.toml")).expect("garden config");
    config
        .lines()
        .find_map(|l| l.strip_prefix("table = "))
        .map(|t| t.trim_matches('"').to_owned())
        .expect("table in garden config")
}

fn nft_table(table: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft list table inet {table}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_egress_rules_become_its_net_out_rules() {
    let mut cell = Cell::start();
    let guid = common::guid("egress");
    let mut web = SecurityGroupRule::new(SecurityProtocol::Tcp, &["203.0.113.0/24"]);
    web.port_range = Some(PortRange {
        start: 8441,
        end: 8443,
    });
    let mut dns = SecurityGroupRule::new(SecurityProtocol::Udp, &["198.51.100.7"]);
    dns.ports = vec![5353];
    let mut req = request(sh("exec sleep 1000"));
    req.egress_rules = vec![web, dns];
    cell.start_container(&guid, req);
    cell.running(&guid, LONG).await;
    let table = nft_table(&garden_table(&cell));
    cell.executor.stop(&guid).await.expect("stop");
    cell.completed(&guid, LONG).await;
    cell.executor.delete(&guid).await.expect("delete");
    for wanted in [
        "ip daddr 203.0.113.0-203.0.113.255 tcp dport 8441-8443 accept",
        "ip daddr 198.51.100.7 udp dport 5353 accept",
    ] {
        assert!(table.contains(wanted), "{wanted} not in\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_egress_rule_fails_the_container_naming_the_rule() {
    let mut cell = Cell::start();
    let guid = common::guid("bad-egress");
    let mut req = request(sh("true"));
    req.egress_rules = vec![SecurityGroupRule::new(
        SecurityProtocol::Tcp,
        &["10.0.0.0/8"],
    )];
    cell.start_container(&guid, req);
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(result.failed);
    assert!(
        result.failure_reason.contains("egress rule 0")
            && result.failure_reason.contains("needs ports"),
        "{}",
        result.failure_reason
    );
    cell.executor.delete(&guid).await.expect("delete");
}
