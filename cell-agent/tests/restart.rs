//! A restarted executor: reconcile adopts the containers the caller still
//! wants (and follows their processes again), destroys the rest, and never
//! touches containers of other owners.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cell_agent::executor::RunRequest;
use cell_agent::executor::{ContainerState, Event, Executor, NullLogSink};
use common::{request, sh, Cell};
use diego::models::check::CheckDefinition;
use garden_api::client::OutputStreams;
use garden_api::types::{ContainerSpec, ProcessSpec, Properties};

const LONG: Duration = Duration::from_secs(60);

/// A process-checked LRP that sleeps.
fn sleeper() -> RunRequest {
    let mut req = request(sh("exec sleep 1000"));
    req.monitor = Some(CheckDefinition::default());
    req
}

/// Runs LRPs on an executor with `cell`'s configuration in a runtime of
/// its own, waits until they run, then drops that runtime: the executor is
/// gone, its garden containers and processes stay.
fn run_then_vanish(cell: &Cell, lrps: Vec<(String, RunRequest)>) {
    let config = cell.executor.config().clone();
    let client = cell.garden.client.clone();
    let count = lrps.len();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let executor = Executor::new(config, client, Arc::new(NullLogSink)).expect("executor");
            let mut events = executor.subscribe();
            for (guid, req) in lrps {
                let mut tags = BTreeMap::new();
                tags.insert("process-guid".to_string(), "web".to_string());
                executor
                    .reserve(&guid, common::small(), tags)
                    .expect("reserve");
                executor.run(&guid, req).expect("run");
            }
            let mut running = 0;
            while running < count {
                match tokio::time::timeout(LONG, events.recv()).await {
                    Ok(Ok(Event::Running(_))) => running += 1,
                    Ok(Ok(Event::Completed(c))) => panic!("completed: {c:?}"),
                    Ok(Ok(_)) => {}
                    other => panic!("no running event: {other:?}"),
                }
            }
        });
        rt.shutdown_background();
    })
    .join()
    .expect("first executor");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_adopts_wanted_containers_and_destroys_the_rest() {
    let mut cell = Cell::start();
    let client = cell.garden.client.clone();
    let (keep, orphan, foreign) = (
        common::guid("keep"),
        common::guid("orphan"),
        common::guid("foreign"),
    );
    run_then_vanish(
        &cell,
        vec![(keep.clone(), sleeper()), (orphan.clone(), sleeper())],
    );
    let mut spec = ContainerSpec {
        handle: foreign.clone(),
        ..ContainerSpec::default()
    };
    spec.image.uri = common::busybox_rootfs();
    client.create(&spec).await.expect("create foreign");

    let before = cell.executor.remaining_resources();
    let report = cell
        .executor
        .reconcile(|guid| guid == keep)
        .await
        .expect("reconcile");
    assert_eq!(report.adopted, std::slice::from_ref(&keep));
    assert_eq!(report.destroyed, std::slice::from_ref(&orphan));
    assert!(report.failed.is_empty(), "{report:?}");
    let mut left = client.list(&Properties::new()).await.expect("list");
    left.sort();
    let mut expected = vec![keep.clone(), foreign.clone()];
    expected.sort();
    assert_eq!(
        left, expected,
        "the orphan is gone, the foreign one untouched"
    );
    let adopted = cell.executor.get(&keep).expect("adopted");
    assert_eq!(adopted.state, ContainerState::Running, "{adopted:?}");
    assert!(adopted.adopted);
    assert_eq!(adopted.resources, common::small());
    assert_eq!(adopted.tags["process-guid"], "web");
    assert_eq!(
        cell.executor.remaining_resources().memory_mb,
        before.memory_mb - common::small().memory_mb
    );
    let again = cell.executor.reconcile(|_| false).await.expect("again");
    assert!(again.adopted.is_empty() && again.destroyed.is_empty());

    // Its process is followed again: killing it crashes the instance.
    let kill = ProcessSpec {
        path: "/usr/bin/killall".into(),
        args: vec!["sleep".into()],
        ..ProcessSpec::default()
    };
    let status = client
        .run(&keep, &kill, OutputStreams::NONE)
        .await
        .expect("run killall")
        .wait()
        .await
        .expect("status");
    assert_eq!(status, 0);
    let done = cell.completed(&keep, LONG).await;
    let result = done.result.expect("result");
    assert!(result.failed, "{result:?}");
    assert!(
        result.failure_reason.starts_with("Exited with status "),
        "{result:?}"
    );
    cell.executor.delete(&keep).await.expect("delete");
    let left = client.list(&Properties::new()).await.expect("list");
    assert_eq!(left, [foreign]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adopted_container_stops_like_any_other() {
    let mut cell = Cell::start();
    let keep = common::guid("keep");
    run_then_vanish(&cell, vec![(keep.clone(), sleeper())]);
    let report = cell.executor.reconcile(|_| true).await.expect("reconcile");
    assert_eq!(report.adopted, std::slice::from_ref(&keep));
    cell.executor.stop(&keep).await.expect("stop");
    let done = cell.completed(&keep, LONG).await;
    let result = done.result.expect("result");
    assert!(result.stopped && !result.failed, "{result:?}");
    cell.executor.delete(&keep).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn liveness_checks_resume_after_adoption() {
    let mut cell = Cell::start();
    let keep = common::guid("live");
    let mut req = request(sh(common::HTTP_SERVER));
    req.monitor = common::http_check(8081);
    cell.garden.loopback_up_soon(&keep);
    run_then_vanish(&cell, vec![(keep.clone(), req)]);
    cell.executor.reconcile(|_| true).await.expect("reconcile");
    let healthy = cell
        .wait_for(&keep, LONG, |e| match e {
            Event::Health { healthy, .. } => Some(*healthy),
            _ => None,
        })
        .await;
    assert!(healthy, "the first liveness check after adoption passes");
    common::make_sick(&cell.garden.client, &keep).await;
    let done = cell.completed(&keep, LONG).await;
    let result = done.result.expect("result");
    assert!(
        result
            .failure_reason
            .starts_with("Instance became unhealthy: received status code 503"),
        "{result:?}"
    );
    cell.executor.delete(&keep).await.expect("delete");
}
