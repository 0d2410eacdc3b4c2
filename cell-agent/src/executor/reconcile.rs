//! After a restart: the garden containers this executor's owner created,
//! adopted into the store when the caller still wants them, destroyed
//! otherwise. An adopted container is watched again: its running
//! processes are re-attached (the first to exit ends it, as Codependent
//! would) and an LRP's liveness checks resume.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use garden_api::types::Properties;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::container::Container;
use super::garden_spec::{describe, Described, OWNER};
use super::health::{self, CHECK_ID_PREFIX};
use super::lifecycle;
use super::process::Output;
use super::state::ContainerState;
use super::steps::{self, StepContext, StepError, StepResult};
use super::{lock, Executor, ExecutorError, Inner};

/// What `reconcile` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Guids now in the store as `Running` (adopted).
    pub adopted: Vec<String>,
    /// Guids whose garden containers were destroyed.
    pub destroyed: Vec<String>,
    /// Guids that could not be handled, with why.
    pub failed: Vec<(String, String)>,
}

impl Executor {
    /// Looks at every garden container owned by this executor's owner that
    /// the store does not know: `keep(guid)` true adopts it (state
    /// `Running`, resources and tags from its properties, its processes
    /// and liveness checks watched again), false destroys it.
    pub async fn reconcile(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<ReconcileReport, ExecutorError> {
        let garden = &self.inner.garden;
        let filter = Properties::from([(OWNER.to_owned(), self.inner.config.owner.clone())]);
        let handles = garden
            .list(&filter)
            .await
            .map_err(|source| ExecutorError::Garden {
                op: "list",
                guid: String::new(),
                source: Box::new(source),
            })?;
        let mut report = ReconcileReport::default();
        for handle in handles {
            let properties = match garden.properties(&handle).await {
                Ok(p) => p,
                Err(e) => {
                    report.failed.push((handle, e.to_string()));
                    continue;
                }
            };
            let described = describe(&handle, &properties);
            if lock(&self.inner.store).get(&described.guid).is_ok() {
                continue;
            }
            if keep(&described.guid) {
                report.adopted.push(described.guid.clone());
                self.adopt(described);
            } else {
                match garden.destroy(&handle).await {
                    Ok(()) => {
                        tracing::info!(guid = %described.guid, "destroyed unwanted garden container");
                        report.destroyed.push(described.guid);
                    }
                    Err(e) => report.failed.push((described.guid, e.to_string())),
                }
            }
        }
        Ok(report)
    }
}

impl Executor {
    fn adopt(&self, described: Described) {
        let now = SystemTime::now();
        let guid = described.guid.clone();
        let cancel = lock(&self.inner.store).insert(Container {
            guid: guid.clone(),
            state: ContainerState::Running,
            resources: described.resources,
            tags: described.tags.clone(),
            kind: described.kind,
            ports: Vec::new(),
            allocated_at: now,
            state_changed_at: now,
            health: None,
            result: None,
            adopted: true,
        });
        tracing::info!(%guid, "adopted garden container");
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let ctx = lifecycle::step_context(&inner, &described.guid, described.log.clone());
            let outcome = watch(&inner, &described, &ctx, &cancel).await;
            let result = lifecycle::conclude(
                &inner,
                &described.guid,
                described.result_file.as_deref(),
                &ctx,
                &cancel,
                outcome,
            )
            .await;
            inner.finish(&described.guid, result);
        });
        lock(&self.inner.tasks).insert(guid, task);
    }
}

/// Follows an adopted container until one of its processes exits, a
/// liveness check fails, or `cancel` fires.
async fn watch(
    inner: &Arc<Inner>,
    described: &Described,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> StepResult {
    let info = inner
        .garden
        .info(&described.guid)
        .await
        .map_err(|e| StepError::Process {
            path: "the adopted container".into(),
            source: Box::new(e),
        })?;
    let ids: Vec<String> = info
        .process_ids
        .into_iter()
        .filter(|id| !id.starts_with(CHECK_ID_PREFIX))
        .collect();
    if ids.is_empty() {
        return Err(StepError::Adopted(
            "its processes ended while the executor was away".into(),
        ));
    }
    // Its processes run: a `process` health check is satisfied.
    ctx.process_started.send_replace(true);
    let report = |healthy: bool, message: &str| inner.health(&described.guid, healthy, message);
    let group = cancel.child_token();
    let mut branches: Vec<BoxFuture<'_, StepResult>> = Vec::new();
    for id in &ids {
        let group = group.clone();
        branches.push(
            async move {
                let output = Output::Log {
                    log: ctx.log.clone(),
                    source: ctx.log.source("").to_owned(),
                };
                let mut process = ctx
                    .processes
                    .attach(&ctx.garden, &ctx.handle, id, output)
                    .await
                    .map_err(|e| StepError::Process {
                        path: format!("process {id}"),
                        source: Box::new(e),
                    })?;
                steps::run::follow(&mut process, id, ctx, &group).await
            }
            .boxed(),
        );
    }
    if let Some(definition) = &described.monitor {
        let timing = lifecycle::timing(inner, None, true);
        let group = group.clone();
        let report = &report;
        branches.push(
            async move { health::monitor(definition, timing, ctx, &group, report).await }.boxed(),
        );
    }
    steps::codependent(branches, &group).await
}
