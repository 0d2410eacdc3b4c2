//! Starting and stopping the controller: open the data directory, database
//! and blobstore, bootstrap users and the default org/space/domain/stacks,
//! recover from a crash, then run the HTTP server and the staging-timeout
//! sweeper (named components, stopped in reverse order).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::auth::{self, AuthError, HashCost, TokenIssuer};
use crate::bbs;
use crate::blobstore::{BlobError, BlobKind, Blobstore, FsBlobstore};
use crate::config::{Config, SchedulerKind};
use crate::db::{jobs, orgs, packages, users, Db, DbError};
use crate::lifecycles;
use crate::logcache::LogCache;
use crate::lrps;
use crate::scheduler::{RecordingScheduler, Scheduler};
use crate::staging::{Clock, Staging, StagingSettings, SystemClock};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A filesystem or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path or address.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The blobstore failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Keys or passwords failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Syncing LRPs at start failed.
    #[error(transparent)]
    Lrp(#[from] lrps::LrpError),
    /// A lifecycle bundle could not be built.
    #[error(transparent)]
    Lifecycle(#[from] lifecycles::LifecycleError),
}

/// A running controller.
pub struct Controller {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state (for tests and embedding).
    pub state: Arc<AppState>,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    scheduler_tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Staging orchestration (the completion path tests drive).
    pub fn staging(&self) -> Arc<Staging> {
        self.state.staging.clone()
    }

    /// Stops the sweeper, then the server (graceful), in reverse start order.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.scheduler_tasks.into_iter().rev() {
            let _ = task.await;
        }
        let _ = self.sweeper.await;
        let _ = self.server.await;
        tracing::info!("controller stopped");
    }

    /// Resolves when the server stops (after [`Controller::shutdown`] or a failure).
    pub async fn wait(&mut self) {
        let _ = (&mut self.server).await;
    }

    /// A token that stops the controller when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

fn io_err(
    what: &'static str,
    path: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.into();
    move |source| ServerError::Io { what, path, source }
}

/// Starts a controller with the wall clock.
pub async fn start(config: Config) -> Result<Controller, ServerError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Starts a controller with an injected clock (staging deadlines).
pub async fn start_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<Controller, ServerError> {
    start_with_clocks(config, clock, Arc::new(bbs::SystemClock)).await
}

/// Starts a controller with injected clocks for staging deadlines and for
/// the BBS (back-off, presence expiry).
pub async fn start_with_clocks(
    config: Config,
    clock: Arc<dyn Clock>,
    bbs_clock: Arc<dyn bbs::Clock>,
) -> Result<Controller, ServerError> {
    let data = config.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(io_err("creating", data.display().to_string()))?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io_err("binding", config.listen.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(io_err("reading address of", config.listen.to_string()))?;
    let base_url = config
        .external_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        });
    let state =
        tokio::task::spawn_blocking(move || build_state(config, base_url, clock, bbs_clock))
            .await
            .map_err(|e| ServerError::Io {
                what: "starting",
                path: String::new(),
                source: std::io::Error::other(e.to_string()),
            })??;
    let state = Arc::new(state);
    let cancel = CancellationToken::new();
    let sweeper = tokio::spawn(sweep(state.clone(), cancel.clone()));
    let scheduler_tasks = match &state.bbs {
        Some(bbs) => bbs.start(cancel.clone()),
        None => Vec::new(),
    };
    let app = api::router(state.clone());
    let stop = cancel.clone();
    let server = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "http server failed");
            }
        }),
        Some(acceptor) => {
            let listener = crate::tls::TlsListener::new(listener, acceptor)
                .map_err(io_err("reading address of", addr.to_string()))?;
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "https server failed");
                }
            })
        }
    };
    tracing::info!(%addr, tls = state.config.tls(), "controller listening");
    Ok(Controller {
        addr,
        state,
        cancel,
        server,
        sweeper,
        scheduler_tasks,
    })
}

/// Opens everything and bootstraps the database. Blocking.
fn build_state(
    config: Config,
    base_url: String,
    clock: Arc<dyn Clock>,
    bbs_clock: Arc<dyn bbs::Clock>,
) -> Result<AppState, ServerError> {
    let data = config.data_dir.clone();
    let db = Db::open_with_readers(
        &data.join("controller.db"),
        config.database.read_connections,
    )?;
    let blobs: Arc<dyn Blobstore> = Arc::new(FsBlobstore::open(&data.join("blobs"))?);
    let signing_key = match &config.auth.signing_key {
        Some(k) => k.clone(),
        None => auth::load_or_create_secret(&data.join("jwt-signing.key"))?,
    };
    let internal_key = match &config.internal.api_key {
        Some(k) => k.clone(),
        None => auth::load_or_create_secret(&data.join("internal-api.key"))?,
    };
    let hash_cost = HashCost {
        memory_kib: config.auth.argon2_memory_kib,
        iterations: config.auth.argon2_iterations,
    };
    bootstrap(&db, &config, &data, hash_cost)?;
    let recovered = db.write_blocking(|tx| {
        Ok((
            packages::fail_interrupted_uploads(tx)?,
            jobs::fail_interrupted(tx)?,
        ))
    })?;
    if recovered != (0, 0) {
        tracing::warn!(
            uploads = recovered.0,
            jobs = recovered.1,
            "failed work interrupted by a restart"
        );
    }
    let lifecycle_dir = config
        .staging
        .lifecycle_dir
        .clone()
        .unwrap_or_else(lifecycles::default_dir);
    let lifecycles = lifecycles::prepare(&lifecycle_dir, &data.join("lifecycles"))?;
    let removed = collect_garbage(&db, blobs.as_ref())?;
    if removed > 0 {
        tracing::info!(removed, "removed blobs nothing refers to");
    }
    let logs = Arc::new(LogCache::open(
        db.clone(),
        config.log_cache.max_envelopes_per_source,
        config.log_cache.max_sources,
    )?);
    let (scheduler, bbs): (Arc<dyn Scheduler>, _) = match config.scheduler.kind {
        SchedulerKind::Recording => (Arc::new(RecordingScheduler::new(db.clone())), None),
        SchedulerKind::Diego => {
            let settings = bbs::BbsSettings::from_config(&config.scheduler);
            let bbs = bbs::Bbs::new(db.clone(), settings, bbs_clock);
            let diego = bbs::DiegoScheduler::new(bbs.clone(), config.default_stack.clone());
            (Arc::new(diego), Some(bbs))
        }
    };
    let settings = StagingSettings {
        timeout_secs: i64::try_from(config.staging.timeout_secs).unwrap_or(i64::MAX),
        task_timeout_secs: i64::try_from(config.tasks.timeout_secs).unwrap_or(i64::MAX),
        memory_mb: i64::try_from(config.staging.memory_mb).unwrap_or(1024),
        disk_mb: i64::try_from(config.staging.disk_mb).unwrap_or(4096),
        base_url: base_url.clone(),
        lifecycles: Arc::new(lifecycles),
        insecure_docker_registries: config.staging.insecure_docker_registries.clone(),
        staging_egress_rules: config.staging.egress_rules.clone(),
        app_egress_rules: config.apps.egress_rules.clone(),
    };
    let staging = Arc::new(Staging::new(
        db.clone(),
        blobs.clone(),
        logs.clone(),
        scheduler.clone(),
        clock,
        settings,
    ));
    if let Some(bbs) = &bbs {
        bbs.set_staging(staging.clone());
    }
    let synced = lrps::sync_all(&db, scheduler.as_ref(), &staging)?;
    tracing::info!(apps = synced, "desired LRPs synced");
    let tokens = TokenIssuer::new(
        signing_key.as_bytes(),
        format!("{base_url}/oauth/token"),
        config.auth.access_token_ttl_secs,
        config.auth.refresh_token_ttl_secs,
    );
    Ok(AppState {
        config,
        base_url,
        db,
        blobs,
        logs,
        scheduler,
        staging,
        tokens,
        internal_key,
        hash_cost,
        metrics: Default::default(),
        bbs,
    })
}

/// Removes blobs no row refers to (left by deleted apps or by a crash
/// between storing a blob and recording it). Runs before the server
/// starts, so no upload can be between its two steps.
fn collect_garbage(db: &Db, blobs: &dyn Blobstore) -> Result<usize, ServerError> {
    let referenced: std::collections::HashSet<String> = db
        .read_blocking(packages::referenced_blobs)?
        .into_iter()
        .collect();
    let mut removed = 0;
    for kind in BlobKind::ALL {
        for key in blobs.keys(kind)? {
            if !referenced.contains(&key) {
                blobs.delete(kind, &key)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Users, the default org and space, stacks and the shared domain.
fn bootstrap(
    db: &Db,
    config: &Config,
    data: &std::path::Path,
    cost: HashCost,
) -> Result<(), ServerError> {
    let mut wanted = Vec::new();
    for u in &config.auth.users {
        let hash = match (&u.password_hash, &u.password) {
            (Some(h), _) => h.clone(),
            (None, Some(p)) => auth::hash_password(p, cost)?,
            (None, None) => continue,
        };
        wanted.push((u.name.clone(), hash, u.admin));
    }
    let no_users =
        db.read_blocking(|c| users::by_name(c, "admin"))?.is_none() && config.auth.users.is_empty();
    if no_users {
        let password = auth::random_secret(12)?;
        let path: PathBuf = data.join("admin-password");
        auth::write_private(&path, &password)
            .map_err(io_err("writing", path.display().to_string()))?;
        tracing::warn!(path = %path.display(), "created user admin with a generated password");
        wanted.push(("admin".into(), auth::hash_password(&password, cost)?, true));
    }
    db.write_blocking(|tx| {
        for (name, hash, admin) in &wanted {
            users::upsert(tx, name, hash, *admin)?;
        }
        let org = match orgs::org_by_name(tx, &config.default_org)? {
            Some(o) => o,
            None => orgs::create_org(tx, &config.default_org)?,
        };
        let space = match orgs::space_by_name(tx, &org.guid, &config.default_space)? {
            Some(s) => s,
            None => orgs::create_space(tx, &org.guid, &config.default_space)?,
        };
        for (name, _, admin) in &wanted {
            if !admin {
                if let Some(u) = users::by_name(tx, name)? {
                    users::grant_space_role(tx, &space.guid, &u.guid, "space_developer")?;
                }
            }
        }
        for s in &config.stacks {
            orgs::ensure_stack(tx, &s.name, &s.description, s.name == config.default_stack)?;
        }
        orgs::ensure_domain(tx, &config.apps_domain)?;
        Ok(())
    })?;
    Ok(())
}

/// Fails builds and tasks past their deadline, every `sweep_interval_secs`.
async fn sweep(state: Arc<AppState>, cancel: CancellationToken) {
    let period = Duration::from_secs(state.config.staging.sweep_interval_secs);
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let staging = state.staging.clone();
        match tokio::task::spawn_blocking(move || staging.expire_overdue()).await {
            Ok(Ok(failed)) if !failed.is_empty() => {
                tracing::warn!(guids = ?failed, "builds or tasks timed out")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "deadline sweep failed"),
            _ => {}
        }
    }
}
