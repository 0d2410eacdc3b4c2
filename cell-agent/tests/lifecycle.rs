//! The executor against a real gardend: Tasks with result files, LRPs with
//! port, http and process health checks, crashes, stops, composite steps.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cell_agent::executor::{
    lrp_tags, tags, Capacity, ContainerState, Event, Executor, ExecutorConfig, NullLogSink,
    Resources, RunRequest,
};
use common::{request, sh, Cell};
use diego::models::action::{Action, EmitProgressAction, Steps, TimeoutAction, TryAction};
use diego::models::check::{Check, CheckDefinition};
use diego::models::DesiredLrp;
use garden_api::client::Client;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(60);

fn port_check(port: u16) -> Option<CheckDefinition> {
    Some(CheckDefinition {
        checks: vec![Check::Tcp {
            port,
            connect_timeout_ms: 0,
        }],
        log_source: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn task_result_file_logs_and_delete() {
    let mut cell = Cell::start();
    let guid = common::guid("task");
    let mut req = request(sh(
        "echo hello from the task; echo oops >&2; printf '{\"answer\":42}' > /tmp/result.json",
    ));
    req.result_file = Some("/tmp/result.json".into());
    req.log.source_name = "APP/TASK/t".into();
    let total = cell.executor.total_resources();
    cell.start_container(&guid, req);
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(!result.failed, "{result:?}");
    assert_eq!(result.result, "{\"answer\":42}");
    assert_eq!(result.exit_status, Some(0));
    let logs = cell.log_messages();
    assert!(
        logs.contains(&"hello from the task".to_string()),
        "{logs:?}"
    );
    assert!(logs.contains(&"oops".to_string()), "{logs:?}");
    assert_ne!(cell.executor.remaining_resources(), total);
    cell.executor.delete(&guid).await.expect("delete");
    assert_eq!(cell.executor.remaining_resources(), total);
    let handles = cell
        .garden
        .client
        .list(&Default::default())
        .await
        .expect("list");
    assert!(!handles.contains(&guid), "garden container destroyed");
    assert!(cell.executor.get(&guid).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn lrp_with_a_port_check_runs_reports_metrics_and_stops() {
    let mut cell = Cell::start();
    let metrics = CancellationToken::new();
    tokio::spawn({
        let executor = cell.executor.clone();
        let cancel = metrics.clone();
        async move { executor.run_metrics(cancel).await }
    });
    let guid = common::guid("lrp");
    // As the rep will: from diego's desired LRP.
    let mut lrp = DesiredLrp::new("web", "cf-apps", sh("exec nc -ll -p 8080 -e /bin/cat"));
    lrp.rootfs = common::busybox_rootfs();
    lrp.memory_mb = 64;
    lrp.disk_mb = 64;
    lrp.check_definition = Some(CheckDefinition::port(8080));
    cell.garden.loopback_up_soon(&guid);
    let started = Instant::now();
    cell.executor
        .reserve(&guid, Resources::of_lrp(&lrp), lrp_tags(&lrp, 0, &guid))
        .expect("reserve");
    cell.executor
        .run(&guid, RunRequest::for_lrp(&lrp, 0, &guid))
        .expect("run");
    let running = cell.running(&guid, LONG).await;
    assert_eq!(running.tags[tags::PROCESS_GUID], "web");
    eprintln!("lrp running after {:?}", started.elapsed());
    assert_eq!(running.state, ContainerState::Running);
    assert!(running.health.expect("health").healthy);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = cell.executor.metrics().get(&guid) {
            assert!(m.memory_bytes > 0, "{m:?}");
            assert_eq!(m.memory_limit_bytes, 64 << 20);
            break;
        }
        assert!(Instant::now() < deadline, "no metrics for {guid}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cell.executor.stop(&guid).await.expect("stop");
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(result.stopped && !result.failed, "{result:?}");
    cell.executor.delete(&guid).await.expect("delete");
    assert!(!cell.executor.metrics().contains_key(&guid));
    metrics.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_check_passes_then_liveness_failure_crashes_the_instance() {
    let mut cell = Cell::start();
    let guid = common::guid("http");
    let mut req = request(sh(common::HTTP_SERVER));
    req.monitor = common::http_check(8081);
    cell.garden.loopback_up_soon(&guid);
    cell.start_container(&guid, req);
    cell.running(&guid, LONG).await;
    common::make_sick(&cell.garden.client, &guid).await;
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(result.failed, "{result:?}");
    assert!(
        result
            .failure_reason
            .starts_with("Instance became unhealthy: received status code 503"),
        "{result:?}"
    );
    cell.executor.delete(&guid).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn never_healthy_fails_after_the_start_timeout() {
    let mut cell = Cell::start();
    let guid = common::guid("never");
    let mut req = request(sh("exec sleep 1000"));
    req.monitor = port_check(9999);
    req.start_timeout = Some(Duration::from_secs(1));
    cell.start_container(&guid, req);
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(result.failed, "{result:?}");
    assert!(
        result.failure_reason.starts_with(
            "Instance never healthy after 1s: failed to make TCP connection to 127.0.0.1:9999"
        ),
        "{result:?}"
    );
    assert!(!result.stopped);
    cell.executor.delete(&guid).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_start_reports_the_exit_status() {
    let mut cell = Cell::start();
    let guid = common::guid("crash");
    let mut req = request(sh("sleep 0.5; exit 3"));
    req.monitor = Some(CheckDefinition::default());
    cell.start_container(&guid, req);
    cell.running(&guid, LONG).await;
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(result.failed, "{result:?}");
    assert_eq!(result.failure_reason, "Exited with status 3");
    assert_eq!(result.exit_status, Some(3));
    cell.executor.delete(&guid).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn codependent_first_exit_cancels_the_rest() {
    let mut cell = Cell::start();
    let guid = common::guid("codep");
    let action = Action::Codependent(Steps {
        actions: vec![sh("exec sleep 1000"), sh("sleep 0.3; exit 7")],
    });
    let started = Instant::now();
    cell.start_container(&guid, request(action));
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert_eq!(result.failure_reason, "Exited with status 7");
    assert!(started.elapsed() < Duration::from_secs(30));
    cell.executor.delete(&guid).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_a_process_that_ignores_term() {
    let mut cell = Cell::start();
    let guid = common::guid("timeout");
    let action = Action::Timeout(TimeoutAction {
        action: Box::new(sh("trap '' TERM; while true; do sleep 0.1; done")),
        timeout_ms: 500,
        log_source: String::new(),
    });
    cell.start_container(&guid, request(action));
    let began = Instant::now();
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert_eq!(result.failure_reason, "timed out after 500ms");
    // TERM is ignored: SIGKILL after the 2 s grace.
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    cell.executor.delete(&guid).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn try_and_emit_progress() {
    let mut cell = Cell::start();
    let guid = common::guid("try");
    let action = Action::Serial(Steps {
        actions: vec![
            Action::Try(TryAction {
                action: Box::new(sh("exit 1")),
                log_source: String::new(),
            }),
            Action::EmitProgress(EmitProgressAction {
                action: Box::new(sh("echo after > /tmp/r")),
                start_message: "starting".into(),
                success_message: "done".into(),
                failure_message_prefix: "failed".into(),
                log_source: String::new(),
            }),
            Action::EmitProgress(EmitProgressAction {
                action: Box::new(Action::Try(TryAction {
                    action: Box::new(sh("exit 2")),
                    log_source: String::new(),
                })),
                start_message: String::new(),
                success_message: String::new(),
                failure_message_prefix: "never shown".into(),
                log_source: String::new(),
            }),
        ],
    });
    let mut req = request(action);
    req.result_file = Some("/tmp/r".into());
    cell.start_container(&guid, req);
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(!result.failed, "{result:?}");
    assert_eq!(result.result, "after\n");
    let logs = cell.log_messages();
    assert_eq!(logs, ["starting", "done"]);

    let failing = common::guid("progress");
    let action = Action::EmitProgress(EmitProgressAction {
        action: Box::new(sh("exit 4")),
        start_message: String::new(),
        success_message: String::new(),
        failure_message_prefix: "Failed to run".into(),
        log_source: String::new(),
    });
    cell.start_container(&failing, request(action));
    let done = cell.completed(&failing, LONG).await;
    assert_eq!(
        done.result.expect("result").failure_reason,
        "Exited with status 4"
    );
    assert_eq!(cell.log_messages(), ["Failed to run: Exited with status 4"]);
    for g in [guid, failing] {
        cell.executor.delete(&g).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_a_running_task() {
    let mut cell = Cell::start();
    let guid = common::guid("stop");
    cell.start_container(&guid, request(sh("exec sleep 1000")));
    cell.running(&guid, LONG).await;
    let began = Instant::now();
    cell.executor.stop(&guid).await.expect("stop");
    let done = cell.completed(&guid, LONG).await;
    assert!(done.result.expect("result").stopped);
    assert!(began.elapsed() < Duration::from_secs(2), "TERM is enough");
    cell.executor.delete(&guid).await.expect("delete");
}

#[tokio::test]
async fn reserve_beyond_capacity_is_refused() {
    let scratch = tempfile::tempdir().expect("scratch");
    let config = ExecutorConfig {
        capacity: Capacity {
            memory_mb: 100,
            disk_mb: 1000,
            containers: 2,
        },
        ..common::test_config(scratch.path())
    };
    let executor = Executor::new(
        config,
        Client::unix(scratch.path().join("no-garden.sock")),
        std::sync::Arc::new(NullLogSink),
    )
    .expect("executor");
    let mut events = executor.subscribe();
    let missing = Executor::new(
        ExecutorConfig {
            healthcheck_binary: Some(scratch.path().join("nope")),
            ..common::test_config(scratch.path())
        },
        Client::unix(scratch.path().join("no-garden.sock")),
        std::sync::Arc::new(NullLogSink),
    )
    .err()
    .expect("no health-check binary");
    assert!(
        missing
            .to_string()
            .starts_with("finding the health-check binary: "),
        "{missing}"
    );
    let r = |memory_mb, disk_mb| Resources {
        memory_mb,
        disk_mb,
        max_pids: 0,
    };
    executor
        .reserve("a", r(64, 100), BTreeMap::new())
        .expect("fits");
    assert!(matches!(events.recv().await, Ok(Event::Reserved(c)) if c.guid == "a"));
    let err = executor
        .reserve("b", r(64, 100), BTreeMap::new())
        .expect_err("memory");
    assert_eq!(err.to_string(), "insufficient resources for b: memory");
    executor
        .reserve("c", r(36, 100), BTreeMap::new())
        .expect("fits exactly");
    let err = executor
        .reserve("d", r(0, 0), BTreeMap::new())
        .expect_err("slots");
    assert_eq!(err.to_string(), "insufficient resources for d: containers");
    assert_eq!(executor.remaining_resources().memory_mb, 0);
    // Deleting a reserved container needs no garden container.
    executor.delete("a").await.expect("delete reserved");
    assert_eq!(executor.remaining_resources().memory_mb, 64);
    let err = executor
        .run("nope", common::request(sh("true")))
        .expect_err("unknown");
    assert_eq!(err.to_string(), "container nope not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_memory_is_named_in_the_failure() {
    let mut cell = Cell::start();
    let guid = common::guid("oom");
    let mut req = request(sh(
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ));
    req.monitor = Some(CheckDefinition::default());
    cell.executor
        .reserve(
            &guid,
            Resources {
                memory_mb: 32,
                disk_mb: 64,
                max_pids: 0,
            },
            BTreeMap::new(),
        )
        .expect("reserve");
    cell.executor.run(&guid, req).expect("run");
    let done = cell.completed(&guid, LONG).await;
    let result = done.result.expect("result");
    assert!(result.failed, "{result:?}");
    assert!(
        result.failure_reason.starts_with("Exited with status ")
            && result.failure_reason.ends_with(" (out of memory)"),
        "{result:?}"
    );
    cell.executor.delete(&guid).await.expect("delete");
}
