//! The rep end to end: the real `cell-agent run` binary on a real gardend
//! with the busybox rootfs, talking to a small test controller (an axum
//! server on 127.0.0.1 that records what cells send it).

mod common;

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::{Json, Router};
use common::{busybox_rootfs, sh, Garden};
use diego::models::{ActualLrpKey, DesiredLrp, TaskDefinition};
use diego::rep::{
    CellPresence, LrpEvent, LrpEvents, LrpWork, PresenceAck, TaskCompleted, TaskStarted, TaskWork,
    WorkRequest, WorkResponse,
};
use serde_json::Value;

const KEY: &str = "test-cell-key";
const LONG: Duration = Duration::from_secs(60);

/// What the test controller received.
#[derive(Default)]
struct Seen {
    presences: Vec<CellPresence>,
    presence_deleted: bool,
    events: Vec<LrpEvent>,
    started: Vec<String>,
    completed: Vec<(String, TaskCompleted)>,
    logs: Vec<Value>,
    metrics: usize,
    unauthenticated: usize,
    /// Answer 503 to everything (an outage).
    down: bool,
    /// Calls refused while down.
    refused: usize,
}

type Shared = Arc<Mutex<Seen>>;

fn authorized(seen: &Shared, headers: &HeaderMap) -> bool {
    {
        let mut seen = seen.lock().expect("lock");
        if seen.down {
            seen.refused += 1;
            return false;
        }
    }
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {KEY}"));
    if !ok {
        seen.lock().expect("lock").unauthenticated += 1;
    }
    ok
}

/// 503 during an outage, 401 for a wrong key.
fn refusal(seen: &Shared) -> StatusCode {
    if seen.lock().expect("lock").down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn presence(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Json(p): Json<CellPresence>,
) -> Result<Json<PresenceAck>, StatusCode> {
    if !authorized(&seen, &headers) {
        return Err(refusal(&seen));
    }
    seen.lock().expect("lock").presences.push(p);
    Ok(Json(PresenceAck { ttl_secs: 2 }))
}

async fn presence_gone(State(seen): State<Shared>) -> StatusCode {
    seen.lock().expect("lock").presence_deleted = true;
    StatusCode::NO_CONTENT
}

async fn events(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Json(e): Json<LrpEvents>,
) -> StatusCode {
    if !authorized(&seen, &headers) {
        return refusal(&seen);
    }
    seen.lock().expect("lock").events.extend(e.events);
    StatusCode::NO_CONTENT
}

async fn started(
    State(seen): State<Shared>,
    headers: HeaderMap,
    UrlPath(guid): UrlPath<String>,
    Json(_s): Json<TaskStarted>,
) -> StatusCode {
    if !authorized(&seen, &headers) {
        return refusal(&seen);
    }
    seen.lock().expect("lock").started.push(guid);
    StatusCode::NO_CONTENT
}

async fn completed(
    State(seen): State<Shared>,
    headers: HeaderMap,
    UrlPath(guid): UrlPath<String>,
    Json(c): Json<TaskCompleted>,
) -> StatusCode {
    if !authorized(&seen, &headers) {
        return refusal(&seen);
    }
    seen.lock().expect("lock").completed.push((guid, c));
    StatusCode::NO_CONTENT
}

async fn logs(
    State(seen): State<Shared>,
    headers: HeaderMap,
    Json(lines): Json<Vec<Value>>,
) -> StatusCode {
    if !authorized(&seen, &headers) {
        return refusal(&seen);
    }
    seen.lock().expect("lock").logs.extend(lines);
    StatusCode::NO_CONTENT
}

async fn metrics(State(seen): State<Shared>, Json(_b): Json<Value>) -> StatusCode {
    seen.lock().expect("lock").metrics += 1;
    StatusCode::NO_CONTENT
}

/// A TLS listener for the test controller (self-signed certificate).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A self-signed certificate for 127.0.0.1: (PEM, acceptor).
fn tls_identity() -> (String, tokio_rustls::TlsAcceptor) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate");
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
    (pem, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The test controller on 127.0.0.1 (https with `tls`).
async fn controller(tls: Option<tokio_rustls::TlsAcceptor>) -> (String, Shared) {
    let seen = Shared::default();
    let app = Router::new()
        .route(
            "/internal/v1/cells/{id}/presence",
            put(presence).delete(presence_gone),
        )
        .route("/internal/v1/actual_lrps/events", post(events))
        .route("/internal/v1/tasks/{guid}/started", post(started))
        .route("/internal/v1/tasks/{guid}/completed", post(completed))
        .route("/internal/v1/logs", post(logs))
        .route("/internal/v1/cells/{id}/metrics", post(metrics))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    match tls {
        None => {
            tokio::spawn(async move { axum::serve(listener, app).await });
            (format!("http://{addr}"), seen)
        }
        Some(acceptor) => {
            let listener = TlsListener {
                tcp: listener,
                acceptor,
            };
            tokio::spawn(async move { axum::serve(listener, app).await });
            (format!("https://{addr}"), seen)
        }
    }
}

/// A running `cell-agent run`, killed on drop if still running.
struct Agent {
    child: Option<Child>,
    notify: UnixDatagram,
    dir: tempfile::TempDir,
    url: String,
    cell_id: String,
    seen: Shared,
    http: reqwest::Client,
    garden: Arc<Garden>,
}

impl Agent {
    async fn start(extra: &str) -> Agent {
        Agent::start_with(extra, None).await
    }

    /// With `tls`: an https controller whose certificate the agent
    /// trusts through `controller_ca_file`.
    async fn start_with(extra: &str, tls: Option<(String, tokio_rustls::TlsAcceptor)>) -> Agent {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let garden = Arc::new(Garden::start());
        let dir = tempfile::tempdir().expect("tempdir");
        let (controller_url, seen, extra) = match tls {
            None => {
                let (url, seen) = controller(None).await;
                (url, seen, extra.to_owned())
            }
            Some((pem, acceptor)) => {
                let ca = dir.path().join("controller-ca.pem");
                std::fs::write(&ca, pem).expect("ca file");
                let (url, seen) = controller(Some(acceptor)).await;
                let extra = format!("{extra}\ncontroller_ca_file = \"{}\"", ca.display());
                (url, seen, extra)
            }
        };
        let cell_id = common::guid("cell");
        std::fs::write(dir.path().join("cell.key"), format!("{KEY}\n")).expect("key");
        let config = format!(
            "cell_id = \"{cell_id}\"\nzone = \"z1\"\nmemory_mb = 1024\ndisk_mb = 4096\n\
             containers = 10\ngarden_socket = \"{sock}\"\ncontroller_url = \"{controller_url}\"\n\
             cell_key_file = \"{d}/cell.key\"\nlisten = \"127.0.0.1:0\"\n\
             presence_ttl = \"2s\"\npresence_refresh = \"200ms\"\nmetrics_interval = \"300ms\"\n\
             state_dir = \"{d}/state\"\nowner = \"{cell_id}\"\n{extra}\n\
             [stacks]\nbusybox = \"{rootfs}\"\n\
             [executor]\nstop_grace = \"2s\"\nstartup_interval = \"200ms\"\n\
             liveness_interval = \"500ms\"\n",
            sock = garden.dir.path().join("garden.sock").display(),
            d = dir.path().display(),
            rootfs = busybox_rootfs(),
        );
        std::fs::write(dir.path().join("agent.toml"), config).expect("config");
        let notify = UnixDatagram::bind(dir.path().join("notify.sock")).expect("notify socket");
        notify.set_nonblocking(true).expect("nonblocking");
        let mut agent = Agent {
            child: None,
            notify,
            url: String::new(),
            cell_id,
            seen,
            http: reqwest::Client::new(),
            garden,
            dir,
        };
        agent.spawn();
        agent
            .wait_until("a presence", |s| !s.presences.is_empty())
            .await;
        // Port 0 in the configuration: the presence names the bound port.
        agent.url = agent.seen.lock().expect("lock").presences[0]
            .rep_url
            .clone();
        assert!(!agent.url.ends_with(":0"), "{}", agent.url);
        agent
    }

    /// Starts the binary (again) with the same configuration.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_cell-agent"))
            .args(["run", "--config"])
            .arg(self.dir.path().join("agent.toml"))
            .env("CELL_AGENT_LOG", "info,cell_agent=debug")
            .env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn cell-agent");
        self.child = Some(child);
    }

    /// Waits until the agent destroyed `handle` in garden (so that the
    /// test's own clean-up never races the agent's).
    async fn wait_gone(&self, handle: &str) {
        let deadline = Instant::now() + LONG;
        loop {
            let handles = self
                .garden
                .client
                .list(&Default::default())
                .await
                .expect("garden list");
            if !handles.iter().any(|h| h == handle) {
                return;
            }
            assert!(Instant::now() < deadline, "{handle} still in garden");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// sd_notify messages received so far.
    fn notifications(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = self.notify.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The key of the agent's latest presence.
    fn rep_key(&self) -> String {
        let seen = self.seen.lock().expect("lock");
        seen.presences.last().expect("a presence").rep_key.clone()
    }

    async fn wait_until(&self, what: &str, mut done: impl FnMut(&Seen) -> bool) {
        let deadline = Instant::now() + LONG;
        loop {
            if done(&self.seen.lock().expect("lock")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {LONG:?}; agent log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first event `pick` accepts, waiting for it.
    async fn event<T>(&self, what: &str, pick: impl Fn(&LrpEvent) -> Option<T>) -> T {
        let mut found = None;
        self.wait_until(what, |s| {
            found = s.events.iter().find_map(&pick);
            found.is_some()
        })
        .await;
        found.expect("found")
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.rep_key())
    }

    async fn work(&self, work: &WorkRequest) -> WorkResponse {
        let response = self
            .authed(self.http.post(format!("{}/work", self.url)))
            .json(work)
            .send()
            .await
            .expect("POST /work");
        assert_eq!(response.status(), 200);
        response.json().await.expect("work response")
    }

    async fn state(&self) -> diego::auction::CellState {
        self.authed(self.http.get(format!("{}/state", self.url)))
            .send()
            .await
            .expect("GET /state")
            .json()
            .await
            .expect("cell state")
    }

    /// `cell-agent diag --json ...` against this agent; the parsed output.
    fn diag(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        serde_json::from_str(&self.diag_text(&with_json)).expect("diag JSON")
    }

    /// `cell-agent diag ...` against this agent; its output.
    fn diag_text(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_cell-agent"))
            .args(["diag", "--config", "/nonexistent.toml"])
            .args(["--agent-url", &self.url, "--garden-socket"])
            .arg(self.garden.dir.path().join("garden.sock"))
            .args(args)
            .output()
            .expect("run diag");
        assert!(
            out.status.success(),
            "diag {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("child").id();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// Waits for the agent to exit; its status.
    async fn exit_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("child");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent still running:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log());
        }
    }
}

fn task(guid: &str, script: &str) -> TaskWork {
    let mut def = TaskDefinition::new("preloaded:busybox", sh(script));
    def.memory_mb = 64;
    def.disk_mb = 64;
    def.log_guid = format!("app-{guid}");
    def.log_source = "APP/TASK/t".into();
    TaskWork {
        task_guid: guid.into(),
        domain: "cf-tasks".into(),
        definition: def,
    }
}

fn lrp(process_guid: &str, script: &str) -> LrpWork {
    let mut desired = DesiredLrp::new(process_guid, "cf-apps", sh(script));
    desired.rootfs = "preloaded:busybox".into();
    desired.memory_mb = 64;
    desired.disk_mb = 64;
    desired.log_guid = format!("app-{process_guid}");
    LrpWork {
        key: ActualLrpKey::new(process_guid, 0, "cf-apps"),
        desired,
    }
}

fn running_instance(e: &LrpEvent, pg: &str) -> Option<(String, diego::models::NetInfo)> {
    match e {
        LrpEvent::Running {
            key,
            instance,
            net_info,
        } if key.process_guid == pg => Some((instance.instance_guid.clone(), net_info.clone())),
        _ => None,
    }
}

fn claimed_instance(e: &LrpEvent, pg: &str) -> Option<String> {
    match e {
        LrpEvent::Claimed { key, instance } if key.process_guid == pg => {
            Some(instance.instance_guid.clone())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_state_and_a_task_with_its_result() {
    let agent = Agent::start("").await;
    let presence = agent.seen.lock().expect("lock").presences[0].clone();
    assert_eq!(presence.cell_id, agent.cell_id);
    assert_eq!(presence.rep_key.len(), 64, "32 random bytes, hex");
    assert_eq!(presence.capacity.memory_mb, 1024);
    assert_eq!(presence.stacks, ["busybox", "docker"]);
    assert!(!presence.evacuating);
    assert_eq!(agent.seen.lock().expect("lock").unauthenticated, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut notes = Vec::new();
    while !notes.iter().any(|n| n == "READY=1") {
        assert!(Instant::now() < deadline, "no READY=1: {notes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        notes.extend(agent.notifications());
    }

    // No key, a wrong key: 401 on every controller route.
    let state_url = format!("{}/state", agent.url);
    let none = agent.http.get(&state_url).send().await.expect("GET");
    assert_eq!(none.status(), 401);
    let wrong = agent
        .http
        .post(format!("{}/work", agent.url))
        .bearer_auth("not-the-key")
        .json(&WorkRequest::default())
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), 401);
    let malformed = agent
        .authed(agent.http.post(format!("{}/work", agent.url)))
        .header("content-type", "application/json")
        .body("{\"lrps\": 7}")
        .send()
        .await
        .expect("POST");
    assert_eq!(malformed.status(), 422, "a malformed body is refused");
    let ping = agent.http.get(format!("{}/ping", agent.url)).send().await;
    assert_eq!(ping.expect("ping").status(), 200, "loopback needs no key");

    let state = agent.state().await;
    assert_eq!(state.cell_id, agent.cell_id);
    assert_eq!(state.total.memory_mb, 1024);
    assert_eq!(state.available, state.total);
    assert!(state.lrps.is_empty() && state.tasks.is_empty());

    // What does not fit, or names no stack here, is answered with reasons.
    let mut huge = task("t-huge", "true");
    huge.definition.memory_mb = 4096;
    let mut alien = task("t-alien", "true");
    alien.definition.rootfs = "preloaded:cflinuxfs4".into();
    let good = task(
        "t-good",
        "echo hi > /tmp/result; echo task says hello; sleep 1",
    );
    let mut good_def = good.clone();
    good_def.definition.result_file = "/tmp/result".into();
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![],
            tasks: vec![huge, alien, good_def],
        })
        .await;
    let failed: Vec<_> = answer
        .failed_tasks
        .iter()
        .map(|(g, r)| (g.as_str(), r.as_str()))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].0 == "t-huge" && failed[0].1.contains("memory"),
        "{failed:?}"
    );
    assert!(
        failed[1].0 == "t-alien" && failed[1].1.contains("cflinuxfs4"),
        "{failed:?}"
    );
    let state = agent.state().await;
    assert_eq!(state.tasks, ["t-good"]);
    assert_eq!(state.available.memory_mb, 1024 - 64);

    agent
        .wait_until("the task's completion", |s| !s.completed.is_empty())
        .await;
    {
        let seen = agent.seen.lock().expect("lock");
        assert_eq!(seen.started, ["t-good"]);
        let (guid, done) = &seen.completed[0];
        assert_eq!(guid, "t-good");
        assert!(!done.failed, "{done:?}");
        assert_eq!(done.result, "hi\n");
        assert_eq!(done.cell_id, agent.cell_id);
    }
    agent
        .wait_until("the task's log line", |s| {
            s.logs.iter().any(|l| {
                l["line"] == "task says hello"
                    && l["source_id"] == "app-t-good"
                    && l["source_type"] == "APP/TASK/t"
            })
        })
        .await;
    // Deleted once reported: the resources are free again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.state().await.available.memory_mb != 1024 {
        assert!(Instant::now() < deadline, "task container not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_lrp_runs_crashes_is_stopped_and_diag_shows_it() {
    let agent = Agent::start("").await;
    let web = common::guid("web");
    let mut work = lrp(&web, "echo listening; exec nc -ll -p 8080 -e /bin/cat");
    work.desired.check_definition = Some(diego::models::CheckDefinition::port(8080));
    let crashy = common::guid("crashy");
    let crash_work = lrp(&crashy, "sleep 1; exit 3");
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![work, crash_work],
            tasks: vec![],
        })
        .await;
    assert_eq!(answer, WorkResponse::default());
    let instance = agent.event("Claimed", |e| claimed_instance(e, &web)).await;
    agent.garden.loopback_up_soon(&instance);
    let (running, net_info) = agent.event("Running", |e| running_instance(e, &web)).await;
    assert_eq!(running, instance);
    assert_eq!(net_info.address, "127.0.0.1");

    let reason = agent
        .event("Crashed", |e| match e {
            LrpEvent::Crashed { key, reason, .. } if key.process_guid == crashy => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("status 3"), "{reason}");
    let state = agent.state().await;
    assert!(
        state.lrps.iter().any(|l| l.process_guid == web),
        "{state:?}"
    );

    // diag, as an operator runs it.
    agent.wait_until("metrics", |s| s.metrics > 0).await;
    let summary = agent.diag(&["summary"]);
    assert_eq!(summary["agent"]["cell_id"], agent.cell_id.as_str());
    assert_eq!(summary["agent"]["total"]["memory_mb"], 1024);
    assert_eq!(summary["agent"]["presence"]["established"], true);
    assert_eq!(summary["garden"]["reachable"], true);
    assert!(summary["garden"]["capacity"].is_object(), "{summary}");
    let list = agent.diag(&["containers"]);
    let row = list["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["guid"] == instance.as_str())
        .expect("the web instance")
        .clone();
    assert_eq!(row["state"], "running");
    assert_eq!(row["lifecycle"], "lrp");
    assert_eq!(row["owner"], web.as_str());
    assert_eq!(row["memory_mb"], 64);
    assert_eq!(row["health"]["healthy"], true);
    let crashes = list["recent_crashes"].as_array().expect("crashes");
    assert!(
        crashes.iter().any(|k| k["process_guid"] == crashy.as_str()),
        "{list}"
    );
    let table = agent.diag_text(&["containers"]);
    eprintln!("{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with(&instance))
        .unwrap_or_else(|| panic!("{instance} in\n{table}"));
    assert!(
        line.contains("running") && line.contains(&format!("{web}/0")),
        "{line}"
    );
    assert!(
        table.contains("recent crashes:") && table.contains("status 3"),
        "{table}"
    );
    eprintln!("{}", agent.diag_text(&["summary"]));
    let detail = agent.diag(&["container", &instance]);
    assert_eq!(detail["summary"]["guid"], instance.as_str());
    assert!(
        detail["recent_logs"]
            .as_array()
            .expect("logs")
            .iter()
            .any(|l| l == "listening"),
        "{detail}"
    );

    // The controller stops the instance: Removed.
    let wrong = agent
        .authed(
            agent
                .http
                .post(format!("{}/lrps/other/0/{instance}/stop", agent.url)),
        )
        .send()
        .await
        .expect("stop");
    assert_eq!(wrong.status(), 404, "process guid must match");
    let stop = agent
        .authed(
            agent
                .http
                .post(format!("{}/lrps/{web}/0/{instance}/stop", agent.url)),
        )
        .send()
        .await
        .expect("stop");
    assert_eq!(stop.status(), 202);
    agent
        .event("Removed", |e| match e {
            LrpEvent::Removed { instance: i, .. } if i.instance_guid == instance => Some(()),
            _ => None,
        })
        .await;
    agent.wait_gone(&instance).await;
}

/// An address on `lo` outside 127/8, removed on drop.
struct ExtraAddress(IpAddr);

impl ExtraAddress {
    fn add() -> ExtraAddress {
        let n = std::process::id() % 200 + 20;
        let ip: IpAddr = format!("192.0.2.{n}").parse().expect("ip");
        let status = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .expect("ip addr add");
        assert!(status.success(), "adding {ip} to lo");
        ExtraAddress(ip)
    }
}

impl Drop for ExtraAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn evacuation_on_sigterm_waits_for_the_replacement() {
    let mut agent = Agent::start("evacuation_timeout = \"60s\"").await;

    // Admin routes refuse peers outside loopback.
    let extra = ExtraAddress::add();
    let outside = reqwest::Client::builder()
        .local_address(extra.0)
        .build()
        .expect("client");
    let refused = outside
        .post(format!("{}/evacuate", agent.url))
        .send()
        .await
        .expect("POST /evacuate");
    assert_eq!(refused.status(), 403);
    let diag = outside
        .get(format!("{}/diag/summary", agent.url))
        .send()
        .await;
    assert_eq!(diag.expect("diag").status(), 403);
    drop(extra);

    let web = common::guid("evac");
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![lrp(&web, "exec nc -ll -p 8080 -e /bin/cat")],
            tasks: vec![],
        })
        .await;
    assert_eq!(answer, WorkResponse::default());
    let (instance, _) = agent.event("Running", |e| running_instance(e, &web)).await;

    agent.signal(nix::sys::signal::Signal::SIGTERM);
    agent
        .event("Evacuating", |e| match e {
            LrpEvent::Evacuating { instance: i, .. } if i.instance_guid == instance => Some(()),
            _ => None,
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut notes = Vec::new();
    while !notes.iter().any(|n| n == "STOPPING=1") {
        assert!(Instant::now() < deadline, "no STOPPING=1: {notes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        notes.extend(agent.notifications());
    }
    agent
        .wait_until("an evacuating presence", |s| {
            s.presences.last().is_some_and(|p| p.evacuating)
        })
        .await;
    // New work is refused while draining; the instance keeps running.
    let refused = agent
        .work(&WorkRequest {
            lrps: vec![lrp("late", "true")],
            tasks: vec![],
        })
        .await;
    assert!(
        refused.failed_lrps[0].1.contains("evacuating"),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        agent
            .child
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("wait")
            .is_none(),
        "the agent must wait for the replacement"
    );
    // The replacement runs elsewhere: the controller retires this one.
    let stop = agent
        .authed(
            agent
                .http
                .post(format!("{}/lrps/{web}/0/{instance}/stop", agent.url)),
        )
        .send()
        .await
        .expect("stop");
    assert_eq!(stop.status(), 202);
    let status = agent.exit_status(LONG).await;
    assert!(status.success(), "{status:?}\n{}", agent.log());
    {
        let seen = agent.seen.lock().expect("lock");
        assert!(seen.presence_deleted);
        let removed = seen.events.iter().any(
            |e| matches!(e, LrpEvent::Removed { instance: i, .. } if i.instance_guid == instance),
        );
        assert!(removed, "Removed event for {instance}");
    }
    let left = agent
        .garden
        .client
        .list(&Default::default())
        .await
        .expect("garden list");
    assert!(!left.contains(&instance), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_adopts_lrps_fails_tasks_and_evacuates_on_request() {
    let mut agent = Agent::start("").await;
    let web = common::guid("adopt");
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![lrp(&web, "exec nc -ll -p 8080 -e /bin/cat")],
            tasks: vec![task("t-lost", "sleep 600")],
        })
        .await;
    assert_eq!(answer, WorkResponse::default());
    let (instance, _) = agent.event("Running", |e| running_instance(e, &web)).await;
    agent
        .wait_until("the task's start", |s| {
            s.started.contains(&"t-lost".to_owned())
        })
        .await;

    // kill -9: nothing is cleaned up; the next start reconciles.
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    agent.exit_status(LONG).await;
    let first_key = agent.rep_key();
    agent.seen.lock().expect("lock").events.clear();
    agent.spawn();
    agent
        .wait_until("a new presence", |s| {
            s.presences.last().is_some_and(|p| p.rep_key != first_key)
        })
        .await;
    agent.url = agent
        .seen
        .lock()
        .expect("lock")
        .presences
        .last()
        .expect("presence")
        .rep_url
        .clone();
    let (adopted, _) = agent
        .event("Running again", |e| running_instance(e, &web))
        .await;
    assert_eq!(adopted, instance, "the same container, adopted");
    agent
        .wait_until("the lost task's completion", |s| {
            s.completed
                .iter()
                .any(|(g, c)| g == "t-lost" && c.failed && c.failure_reason.contains("restarted"))
        })
        .await;
    let handles = agent
        .garden
        .client
        .list(&Default::default())
        .await
        .expect("garden list");
    assert!(handles.contains(&instance), "{handles:?}");
    assert!(!handles.contains(&"t-lost".to_owned()), "{handles:?}");
    let state = agent.state().await;
    assert_eq!(state.lrps.len(), 1, "{state:?}");
    assert!(state.tasks.is_empty(), "{state:?}");
    let list = agent.diag(&["containers"]);
    assert_eq!(list["containers"][0]["adopted"], true, "{list}");

    // /evacuate from loopback: the adopted instance is evacuated too.
    let evacuate = agent
        .http
        .post(format!("{}/evacuate", agent.url))
        .send()
        .await
        .expect("POST /evacuate");
    assert_eq!(evacuate.status(), 202);
    agent
        .event("Evacuating", |e| match e {
            LrpEvent::Evacuating { instance: i, .. } if i.instance_guid == instance => Some(()),
            _ => None,
        })
        .await;
    let stop = agent
        .authed(
            agent
                .http
                .post(format!("{}/lrps/{web}/0/{instance}/stop", agent.url)),
        )
        .send()
        .await
        .expect("stop");
    assert_eq!(stop.status(), 202);
    let status = agent.exit_status(LONG).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_wait_out_a_controller_outage_in_order() {
    let agent = Agent::start("").await;
    agent.seen.lock().expect("lock").down = true;
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![],
            tasks: vec![task("t-outage", "echo during the outage")],
        })
        .await;
    assert_eq!(answer, WorkResponse::default());
    // Refused presences, starts, completions and logs pile up meanwhile.
    agent.wait_until("refused calls", |s| s.refused >= 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let mut seen = agent.seen.lock().expect("lock");
        assert!(seen.completed.is_empty() && seen.started.is_empty());
        seen.presences.clear();
        seen.down = false;
    }
    agent
        .wait_until("the completion after the outage", |s| {
            s.started == ["t-outage"]
                && s.completed
                    .iter()
                    .any(|(g, c)| g == "t-outage" && !c.failed)
        })
        .await;
    agent
        .wait_until("presences again", |s| s.presences.len() >= 2)
        .await;
    agent
        .wait_until("the log line after the outage", |s| {
            s.logs.iter().any(|l| l["line"] == "during the outage")
        })
        .await;
    let summary = agent.diag(&["summary"]);
    assert_eq!(summary["agent"]["reports_dropped"], 0, "{summary}");
    assert!(
        summary["agent"]["presence"]["last_error"].is_null(),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn evacuation_times_out_stops_what_is_left_and_exits() {
    let mut agent = Agent::start("evacuation_timeout = \"2s\"").await;
    let web = common::guid("stuck");
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![lrp(&web, "exec nc -ll -p 8080 -e /bin/cat")],
            tasks: vec![task("t-long", "sleep 600")],
        })
        .await;
    assert_eq!(answer, WorkResponse::default());
    let (instance, _) = agent.event("Running", |e| running_instance(e, &web)).await;
    agent
        .wait_until("the task's start", |s| {
            s.started.contains(&"t-long".to_owned())
        })
        .await;
    let started = Instant::now();
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    // The controller never retires the instance.
    let status = agent.exit_status(LONG).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited the timeout"
    );
    {
        let seen = agent.seen.lock().expect("lock");
        let removed = seen.events.iter().any(
            |e| matches!(e, LrpEvent::Removed { instance: i, .. } if i.instance_guid == instance),
        );
        assert!(removed, "stopped instance reported Removed");
        let task = seen.completed.iter().find(|(g, _)| g == "t-long");
        let (_, done) = task.expect("the task reported");
        assert!(
            done.failed && done.failure_reason.contains("evacuated"),
            "{done:?}"
        );
        assert!(seen.presence_deleted);
    }
    let left = agent
        .garden
        .client
        .list(&Default::default())
        .await
        .expect("garden list");
    assert!(
        !left.contains(&instance) && !left.contains(&"t-long".to_owned()),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_controller_with_its_own_ca() {
    let agent = Agent::start_with("", Some(tls_identity())).await;
    let presence = agent.seen.lock().expect("lock").presences[0].clone();
    assert_eq!(presence.cell_id, agent.cell_id);
    let answer = agent
        .work(&WorkRequest {
            lrps: vec![],
            tasks: vec![task("t-tls", "echo over tls")],
        })
        .await;
    assert_eq!(answer, WorkResponse::default());
    agent
        .wait_until("the completion over https", |s| {
            s.completed.iter().any(|(g, c)| g == "t-tls" && !c.failed)
        })
        .await;
}
