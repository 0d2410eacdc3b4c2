//! The platform on one machine: controller-lite with the Diego scheduler
//! and two real cells, each a `cell-agent run` on its own gardend. An app
//! process of 4 instances is placed 2/2, every instance answers on its
//! cell's host port, a cell agent is lost (`kill -9`) and its instances come
//! back on the other cell within seconds of the presence TTL, then the
//! process is scaled down to 2.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cell::start_cells;
use common::controller::{app_process, make_droplet, serve_droplet, Ctl, Running};

/// Presence TTL of the controller (and the agents' own).
const TTL: Duration = Duration::from_secs(3);
const LONG: Duration = Duration::from_secs(60);
/// Recovery must finish within this much past the TTL.
const RECOVERY_SLACK: Duration = Duration::from_secs(10);

/// What one instance answers on its host port.
fn answer(r: &Running) -> String {
    let mut stream = TcpStream::connect((r.address.as_str(), r.port))
        .unwrap_or_else(|e| panic!("connect {}:{}: {e}", r.address, r.port));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// Every instance answers `ok` on its cell address and host port.
fn all_answer_ok(running: &[Running]) {
    for r in running {
        assert_eq!(
            answer(r).trim(),
            "ok",
            "instance {} on {}",
            r.index,
            r.cell_id
        );
    }
}

/// `(address, port)` of `running`, sorted.
fn endpoints(running: &[Running]) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = running
        .iter()
        .map(|r| (r.address.clone(), r.port))
        .collect();
    out.sort();
    out
}

fn on_cell(running: &[Running], cell_id: &str) -> usize {
    running.iter().filter(|r| r.cell_id == cell_id).count()
}

/// Waits until `diego_guid` has exactly `n` RUNNING instances that `ok` accepts.
async fn wait_running(
    ctl: &Ctl,
    diego_guid: &str,
    n: usize,
    ok: impl Fn(&[Running]) -> bool,
) -> Vec<Running> {
    let what = format!("{n} RUNNING instances of {diego_guid}");
    common::wait_for(&what, LONG, || async {
        let running = ctl.running(diego_guid).await;
        (running.len() == n && ok(&running)).then_some(running)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn lrp_spreads_over_cells_and_recovers_from_a_lost_cell() {
    common::assert_root();
    let pid = std::process::id();
    let scratch = tempfile::tempdir().expect("scratch");
    let droplet = serve_droplet(&make_droplet(scratch.path()));
    let ctl = Ctl::start(TTL.as_secs(), 30).await;

    let mut cells = start_cells(&ctl, "mc", 0..2).await;
    let ids: Vec<String> = cells.iter().map(|c| c.cell_id.clone()).collect();

    // An app process of 4 instances (the buildpack recipe: droplet
    // download, launcher, port health check on 8080).
    let process = format!("mc-{pid}");
    let diego_guid = format!("{process}-v1");
    let started = Instant::now();
    ctl.desire(app_process(
        &process,
        4,
        droplet,
        "exec nc -ll -p 8080 -e /bin/echo ok",
    ))
    .await;
    let running = wait_running(&ctl, &diego_guid, 4, |_| true).await;
    eprintln!("4 instances RUNNING after {:?}", started.elapsed());
    for id in &ids {
        assert_eq!(on_cell(&running, id), 2, "not 2/2: {running:?}");
    }
    assert_eq!(ctl.routes(&diego_guid).await, endpoints(&running));
    all_answer_ok(&running);

    // A lost cell: the agent dies, its garden and containers stay.
    let lost = ids[0].clone();
    let survivor = ids[1].clone();
    cells[0].kill_agent();
    let killed = Instant::now();
    let running = wait_running(&ctl, &diego_guid, 4, |r| on_cell(r, &survivor) == 4).await;
    let recovery = killed.elapsed();
    eprintln!(
        "recovery after losing {lost}: {recovery:?} until 4 RUNNING on {survivor} \
         (presence TTL {TTL:?})"
    );
    assert!(
        recovery <= TTL + RECOVERY_SLACK,
        "recovery took {recovery:?} (TTL {TTL:?})"
    );
    all_answer_ok(&running);
    assert_eq!(cells[1].containers().await.len(), 4);
    // The lost cell's instances left the routing table with their records.
    assert_eq!(ctl.routes(&diego_guid).await, endpoints(&running));

    // Scale down: the extras stop and leave the survivor's garden.
    ctl.scale(&process, 2).await;
    let running = wait_running(&ctl, &diego_guid, 2, |_| true).await;
    let mut indices: Vec<i64> = running.iter().map(|r| r.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1]);
    common::wait_for("the extras gone from garden", LONG, || async {
        (cells[1].containers().await.len() == 2).then_some(())
    })
    .await;
    all_answer_ok(&running);

    drop(cells);
    ctl.stop().await;
}
