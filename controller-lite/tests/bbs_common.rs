//! Helpers of the BBS tests: a controller in process with the diego
//! scheduler and an injectable BBS clock, and small honest "cells" (axum
//! servers answering the rep's `/state`, `/work` and stops, reporting
//! presence and LRP events back with their own keys).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use controller_lite::bbs::{self, Bbs};
use controller_lite::config::Config;
use controller_lite::scheduler::{BlobLocation, DesiredLrp, HealthCheck};
use controller_lite::server::{self, Controller};
use controller_lite::staging::SystemClock;
use diego::auction::{Capacity, CellState, LrpInstance};
use diego::models::{ActualLrpInstanceKey, ActualLrpKey, NetInfo, PortMapping, Timestamp};
use diego::rep::{CellPresence, LrpEvent, LrpEvents, LrpWork, TaskWork, WorkRequest, WorkResponse};
use tokio::task::JoinHandle;

/// A BBS clock tests move by hand (milliseconds).
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at_now() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(Timestamp::now().unix_millis())))
    }
    pub fn advance(&self, d: Duration) {
        self.0
            .fetch_add(i64::try_from(d.as_millis()).unwrap_or(0), Ordering::SeqCst);
    }
}

impl bbs::Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(Ordering::SeqCst))
    }
}

/// A controller with the diego scheduler.
pub struct Ctl {
    pub ctl: Option<Controller>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub shared_key: String,
}

pub fn config_text(data_dir: &std::path::Path, scheduler: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{}"
[auth]
argon2_memory_kib = 64
argon2_iterations = 1
[internal]
api_key = "shared-test-key"
[scheduler]
kind = "diego"
{scheduler}
"#,
        data_dir.display()
    )
}

impl Ctl {
    pub async fn start(scheduler: &str) -> Result<Self> {
        Self::start_with(scheduler, Arc::new(bbs::SystemClock)).await
    }

    pub async fn start_with(scheduler: &str, clock: Arc<dyn bbs::Clock>) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let config = Config::parse(&config_text(&dir.path().join("data"), scheduler))?;
        let ctl = server::start_with_clocks(config, Arc::new(SystemClock), clock).await?;
        let base = ctl.state.base_url.clone();
        Ok(Self {
            ctl: Some(ctl),
            dir,
            base,
            shared_key: "shared-test-key".into(),
        })
    }

    pub fn controller(&self) -> &Controller {
        self.ctl.as_ref().expect("running")
    }

    pub fn bbs(&self) -> Arc<Bbs> {
        self.controller()
            .state
            .bbs
            .clone()
            .expect("diego scheduler")
    }

    pub async fn cell_key(&self, cell_id: &str) -> Result<String> {
        let db = self.controller().state.db.clone();
        let id = cell_id.to_owned();
        Ok(
            tokio::task::spawn_blocking(move || controller_lite::cells::issue_key(&db, &id))
                .await??,
        )
    }

    pub async fn desire(&self, lrp: DesiredLrp) -> Result<()> {
        let s = self.controller().state.scheduler.clone();
        tokio::task::spawn_blocking(move || s.desire_lrp(&lrp)).await??;
        Ok(())
    }

    /// `(index, state)` of the process's instances as the stats API sees them.
    pub async fn states(&self, process_guid: &str) -> Result<Vec<(i64, String)>> {
        let s = self.controller().state.scheduler.clone();
        let pg = process_guid.to_owned();
        let a = tokio::task::spawn_blocking(move || s.actual_lrps(&pg)).await??;
        Ok(a.into_iter().map(|a| (a.index, a.state)).collect())
    }

    /// RUNNING records of all generations of an app process, from the database.
    pub async fn running_records(&self, process_guid: &str) -> Result<i64> {
        let db = self.controller().state.db.clone();
        let like = format!("{process_guid}-%");
        Ok(db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM bbs_actual_lrps WHERE process_guid LIKE ? AND state = 'RUNNING'",
                    [like],
                    |r| r.get(0),
                )?)
            })
            .await?)
    }

    pub async fn stop(mut self) {
        if let Some(c) = self.ctl.take() {
            c.shutdown().await;
        }
    }
}

/// A buildpack app process for the scheduler.
pub fn app_lrp(process_guid: &str, version: &str, instances: i64) -> DesiredLrp {
    DesiredLrp {
        process_guid: process_guid.into(),
        app_guid: format!("app-{process_guid}"),
        process_type: "web".into(),
        version: version.into(),
        instances,
        memory_mb: 256,
        disk_mb: 512,
        stack: Some("cflinuxfs4".into()),
        droplet: Some(BlobLocation {
            url: "http://127.0.0.1:1/internal/v1/blobs/droplets/abc".into(),
            sha256: "abc".into(),
            sha1: "def".into(),
            size: 1,
        }),
        docker_image: None,
        start_command: "./app".into(),
        env: BTreeMap::new(),
        ports: vec![8080],
        health_check: HealthCheck {
            kind: "port".into(),
            endpoint: None,
            timeout_secs: None,
            invocation_timeout_secs: None,
        },
        routes: vec!["app.example.com".into()],
        log_source_id: "app".into(),
        egress_rules: Vec::new(),
    }
}

/// An internal API call with a bearer key; answers the status.
pub async fn call(
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<serde_json::Value>,
) -> Result<u16> {
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Ok(req.send().await?.status().as_u16())
}

/// LRP events for `cell` with `key`; answers the status.
pub async fn send_events(base: &str, key: &str, cell: &str, events: Vec<LrpEvent>) -> Result<u16> {
    let body = serde_json::to_value(LrpEvents {
        cell_id: cell.into(),
        events,
    })?;
    call(
        reqwest::Method::POST,
        format!("{base}/internal/v1/actual_lrps/events"),
        key,
        Some(body),
    )
    .await
}

pub fn net(port: u16) -> NetInfo {
    NetInfo {
        address: "127.0.0.1".into(),
        instance_address: String::new(),
        ports: vec![PortMapping {
            container_port: 8080,
            host_port: port,
        }],
    }
}

struct Inner {
    evacuating: bool,
    id: String,
    zone: String,
    rep_key: String,
    controller: String,
    cell_key: String,
    total: Capacity,
    available: Capacity,
    /// (process_guid, index) → (instance guid, memory, disk)
    lrps: HashMap<(String, u32), (String, u64, u64)>,
    start_delay: Duration,
    next_port: u16,
    work_calls: usize,
    tasks: HashMap<String, TaskWork>,
}

/// An honest fake cell.
pub struct FakeCell {
    pub id: String,
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: JoinHandle<()>,
    refresher: Option<JoinHandle<()>>,
}

fn authorized(inner: &Mutex<Inner>, headers: &HeaderMap) -> bool {
    let want = format!("Bearer {}", inner.lock().expect("cell").rep_key);
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == want)
}

async fn state(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
) -> Result<Json<CellState>, StatusCode> {
    if !authorized(&inner, &headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let i = inner.lock().expect("cell");
    Ok(Json(CellState {
        cell_id: i.id.clone(),
        zone: i.zone.clone(),
        stacks: vec!["cflinuxfs4".into(), "docker".into()],
        total: i.total,
        available: i.available,
        evacuating: i.evacuating,
        lrps: i
            .lrps
            .keys()
            .map(|(pg, index)| LrpInstance {
                process_guid: pg.clone(),
                index: *index,
            })
            .collect(),
        ..CellState::default()
    }))
}

async fn report(inner: Arc<Mutex<Inner>>, events: Vec<LrpEvent>) {
    let (base, key, id) = {
        let i = inner.lock().expect("cell");
        (i.controller.clone(), i.cell_key.clone(), i.id.clone())
    };
    if let Err(e) = send_events(&base, &key, &id, events).await {
        eprintln!("fake cell {id}: events not delivered: {e}");
    }
}

async fn task_started(inner: Arc<Mutex<Inner>>, guid: String) {
    let (base, key, id) = {
        let i = inner.lock().expect("cell");
        (i.controller.clone(), i.cell_key.clone(), i.id.clone())
    };
    let url = format!("{base}/internal/v1/tasks/{guid}/started");
    let body = serde_json::json!({ "cell_id": id });
    if let Err(e) = call(reqwest::Method::POST, url, &key, Some(body)).await {
        eprintln!("fake cell {id}: task start not delivered: {e}");
    }
}

fn accept(i: &mut Inner, lrp: &LrpWork) -> Option<(ActualLrpInstanceKey, u16)> {
    let (mem, disk) = (lrp.desired.memory_mb, lrp.desired.disk_mb);
    if i.available.memory_mb < mem || i.available.disk_mb < disk || i.available.containers == 0 {
        return None;
    }
    i.available.memory_mb -= mem;
    i.available.disk_mb -= disk;
    i.available.containers -= 1;
    let guid = format!(
        "{}-{}",
        i.id,
        uuid_like(i.work_calls, lrp.key.index, &lrp.key.process_guid)
    );
    i.lrps.insert(
        (lrp.key.process_guid.clone(), lrp.key.index),
        (guid.clone(), mem, disk),
    );
    i.next_port += 1;
    Some((ActualLrpInstanceKey::new(guid, i.id.clone()), i.next_port))
}

fn uuid_like(n: usize, index: u32, pg: &str) -> String {
    format!("{n}-{index}-{}", pg.len())
}

async fn work(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(req): Json<WorkRequest>,
) -> Result<Json<WorkResponse>, StatusCode> {
    if !authorized(&inner, &headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let mut failed = Vec::new();
    let mut started = Vec::new();
    let mut failed_tasks = Vec::new();
    let mut tasks = Vec::new();
    let delay = {
        let mut i = inner.lock().expect("cell");
        i.work_calls += 1;
        for lrp in &req.lrps {
            match accept(&mut i, lrp) {
                Some(x) => started.push((lrp.key.clone(), x)),
                None => failed.push((lrp.key.clone(), "insufficient resources".to_owned())),
            }
        }
        for t in &req.tasks {
            if i.available.memory_mb >= t.definition.memory_mb && i.available.containers > 0 {
                i.available.memory_mb -= t.definition.memory_mb;
                i.available.containers -= 1;
                i.tasks.insert(t.task_guid.clone(), t.clone());
                tasks.push(t.task_guid.clone());
            } else {
                failed_tasks.push((t.task_guid.clone(), "insufficient resources".to_owned()));
            }
        }
        i.start_delay
    };
    for guid in tasks {
        tokio::spawn(task_started(inner.clone(), guid));
    }
    for (key, (instance, port)) in started {
        let inner = inner.clone();
        tokio::spawn(async move {
            let claimed = LrpEvent::Claimed {
                key: key.clone(),
                instance: instance.clone(),
            };
            report(inner.clone(), vec![claimed]).await;
            tokio::time::sleep(delay).await;
            let still = inner
                .lock()
                .expect("cell")
                .lrps
                .get(&(key.process_guid.clone(), key.index))
                .is_some_and(|(g, _, _)| *g == instance.instance_guid);
            if still {
                let running = LrpEvent::Running {
                    key,
                    instance,
                    net_info: net(port),
                };
                report(inner, vec![running]).await;
            }
        });
    }
    Ok(Json(WorkResponse {
        failed_lrps: failed,
        failed_tasks,
    }))
}

async fn stop(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Path((pg, index, guid)): Path<(String, u32, String)>,
) -> StatusCode {
    if !authorized(&inner, &headers) {
        return StatusCode::UNAUTHORIZED;
    }
    let removed = {
        let mut i = inner.lock().expect("cell");
        let slot = (pg.clone(), index);
        match i.lrps.get(&slot) {
            Some((g, mem, disk)) if *g == guid => {
                let (mem, disk) = (*mem, *disk);
                i.lrps.remove(&slot);
                i.available.memory_mb += mem;
                i.available.disk_mb += disk;
                i.available.containers += 1;
                Some(ActualLrpInstanceKey::new(guid, i.id.clone()))
            }
            _ => None,
        }
    };
    if let Some(instance) = removed {
        let key = ActualLrpKey::new(pg, index, "cf-apps");
        tokio::spawn(report(inner, vec![LrpEvent::Removed { key, instance }]));
    }
    StatusCode::ACCEPTED
}

impl FakeCell {
    /// A cell with `memory_mb` of room in `zone`, registered with the
    /// controller (own key) and refreshing its presence every 200 ms.
    pub async fn start(ctl: &Ctl, id: &str, zone: &str, memory_mb: u64) -> Result<Self> {
        let cell_key = ctl.cell_key(id).await?;
        Self::start_at(&ctl.base, cell_key, id, zone, memory_mb).await
    }

    /// [`FakeCell::start`] against the controller at `base` with `cell_key`.
    pub async fn start_at(
        base: &str,
        cell_key: String,
        id: &str,
        zone: &str,
        memory_mb: u64,
    ) -> Result<Self> {
        let capacity = Capacity {
            memory_mb,
            disk_mb: 100_000,
            containers: 100,
        };
        let inner = Arc::new(Mutex::new(Inner {
            evacuating: false,
            id: id.into(),
            zone: zone.into(),
            rep_key: format!("rep-key-{id}"),
            controller: base.to_owned(),
            cell_key,
            total: capacity,
            available: capacity,
            lrps: HashMap::new(),
            start_delay: Duration::from_millis(100),
            next_port: 61000,
            work_calls: 0,
            tasks: HashMap::new(),
        }));
        let app = Router::new()
            .route("/state", get(state))
            .route("/work", post(work))
            .route("/lrps/{pg}/{index}/{guid}/stop", post(stop))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut cell = Self {
            id: id.into(),
            addr,
            inner,
            server,
            refresher: None,
        };
        ensure!(cell.announce().await? == 200, "presence refused");
        let presence_cell = cell.clone_handle();
        cell.refresher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = presence_cell.announce().await;
            }
        }));
        Ok(cell)
    }

    fn clone_handle(&self) -> FakeCell {
        FakeCell {
            id: self.id.clone(),
            addr: self.addr,
            inner: self.inner.clone(),
            server: tokio::spawn(async {}),
            refresher: None,
        }
    }

    pub fn presence(&self) -> CellPresence {
        let i = self.inner.lock().expect("cell");
        CellPresence {
            cell_id: i.id.clone(),
            rep_url: format!("http://{}", self.addr),
            rep_key: i.rep_key.clone(),
            zone: i.zone.clone(),
            stacks: vec!["cflinuxfs4".into(), "docker".into()],
            placement_tags: Vec::new(),
            optional_placement_tags: Vec::new(),
            capacity: i.total,
            evacuating: i.evacuating,
        }
    }

    /// PUT presence with the cell's own key; answers the status.
    pub async fn announce(&self) -> Result<u16> {
        let (base, key) = {
            let i = self.inner.lock().expect("cell");
            (i.controller.clone(), i.cell_key.clone())
        };
        call(
            reqwest::Method::PUT,
            format!("{base}/internal/v1/cells/{}/presence", self.id),
            &key,
            Some(serde_json::to_value(self.presence())?),
        )
        .await
    }

    /// The cell vanishes: no more presence refreshes, no answers.
    pub fn vanish(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        self.server.abort();
    }

    /// Drains: announces itself evacuating and reports every instance
    /// EVACUATING (they keep running until the controller stops them).
    pub async fn evacuate(&self) -> Result<()> {
        let events: Vec<LrpEvent> = {
            let mut i = self.inner.lock().expect("cell");
            i.evacuating = true;
            i.lrps
                .iter()
                .map(|((pg, index), (guid, _, _))| LrpEvent::Evacuating {
                    key: ActualLrpKey::new(pg.clone(), *index, "cf-apps"),
                    instance: ActualLrpInstanceKey::new(guid.clone(), i.id.clone()),
                    net_info: net(61000),
                })
                .collect()
        };
        ensure!(self.announce().await? == 200, "evacuating presence refused");
        report(self.inner.clone(), events).await;
        Ok(())
    }

    pub fn set_start_delay(&self, d: Duration) {
        self.inner.lock().expect("cell").start_delay = d;
    }

    /// Instances on the cell: process guid → count.
    pub fn instances(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (pg, _) in self.inner.lock().expect("cell").lrps.keys() {
            *out.entry(pg.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Tasks the cell was given.
    pub fn tasks(&self) -> Vec<TaskWork> {
        self.inner
            .lock()
            .expect("cell")
            .tasks
            .values()
            .cloned()
            .collect()
    }

    pub fn instance_count(&self) -> usize {
        self.inner.lock().expect("cell").lrps.len()
    }

    pub fn cell_key(&self) -> String {
        self.inner.lock().expect("cell").cell_key.clone()
    }
}

impl Drop for FakeCell {
    fn drop(&mut self) {
        self.vanish();
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
