//! [`DiegoScheduler`]: the controller's [`Scheduler`] hand-off on the BBS.
//! Every call is one transaction; what it asks of the cells (starts, stops,
//! cancels) is queued for the auctioneer after the commit.

use std::sync::Arc;

use diego::models::{
    visible_record, ActualLrp as Record, ActualLrpInstanceKey, ActualLrpState, NetInfo,
    PortMapping, Presence, Task, TaskState,
};
use rusqlite::Connection;

use super::records::{self, Generation};
use super::{rollout, Bbs, BbsError, Effects};
use crate::db::scheduler::ActualLrp;
use crate::db::DbError;
use crate::recipes;
use crate::scheduler::{DesiredLrp, RecordingScheduler, Scheduler, SchedulerError, TaskDefinition};

/// Places work on cells through the BBS and the auctioneer. The staging
/// and task rows of [`RecordingScheduler`] are kept too: they carry the
/// completion path (`Staging::task_completed`).
pub struct DiegoScheduler {
    bbs: Arc<Bbs>,
    recording: RecordingScheduler,
    default_stack: String,
}

fn bbs_err(e: impl Into<BbsError>) -> SchedulerError {
    SchedulerError::Bbs(Box::new(e.into()))
}

impl DiegoScheduler {
    /// A scheduler on `bbs`; work without a stack runs on `default_stack`.
    pub fn new(bbs: Arc<Bbs>, default_stack: impl Into<String>) -> Self {
        let recording = RecordingScheduler::new(bbs.db().clone());
        Self {
            bbs,
            recording,
            default_stack: default_stack.into(),
        }
    }

    /// The BBS.
    pub fn bbs(&self) -> &Arc<Bbs> {
        &self.bbs
    }

    fn write(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Effects, BbsError>,
    ) -> Result<(), SchedulerError> {
        let fx = self.bbs.db().write_blocking_with(f).map_err(bbs_err)?;
        self.bbs.dispatch(fx);
        Ok(())
    }
}

fn legacy(r: &Record, bbs: &Bbs) -> ActualLrp {
    let net = r.net_info.clone().unwrap_or_default();
    let metrics = r
        .instance_key
        .as_ref()
        .and_then(|i| bbs.metrics_of(&i.instance_guid));
    ActualLrp {
        process_guid: r.key.process_guid.clone(),
        index: i64::from(r.key.index),
        state: r.state.to_string(),
        host: net.address.clone(),
        port: net
            .ports
            .iter()
            .find(|p| p.container_port == crate::lrps::APP_PORT)
            .or(net.ports.first())
            .map(|p| i64::from(p.host_port)),
        since: r.since.unix_secs(),
        cpu: metrics.as_ref().map_or(0.0, |m| m.cpu_fraction),
        mem: metrics
            .as_ref()
            .map_or(0, |m| i64::try_from(m.memory_bytes).unwrap_or(i64::MAX)),
        disk: metrics
            .as_ref()
            .map_or(0, |m| i64::try_from(m.disk_bytes).unwrap_or(i64::MAX)),
    }
}

/// Per index below the target, the record to show: a RUNNING one of any
/// generation first (the newest), else the active generation's. During a
/// rolling restart the active generation's records hidden behind an old
/// RUNNING one (a new instance starting, or CRASHED) follow, under their
/// generation's own process guid, so a new version that keeps crashing
/// shows as such.
fn visible_per_index(conn: &Connection, app_process_guid: &str) -> Result<Vec<Record>, DbError> {
    let gens = records::generations(conn, app_process_guid)?;
    let Some(target) = gens
        .iter()
        .find(|g| !g.retiring)
        .map(|g| g.target_instances)
    else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
    for g in &gens {
        all.extend(records::actuals_of(conn, &g.desired.process_guid)?);
    }
    let active = gens
        .iter()
        .find(|g| !g.retiring)
        .map(|g| g.desired.process_guid.as_str());
    let mut out = Vec::new();
    let mut hidden = Vec::new();
    for index in 0..target {
        let here: Vec<&Record> = all.iter().filter(|r| r.key.index == index).collect();
        let running = here
            .iter()
            .find(|r| r.state == ActualLrpState::Running)
            .copied();
        let Some(shown) = running.or_else(|| visible_record(here.iter().copied())) else {
            continue;
        };
        hidden.extend(here.iter().filter(|r| {
            Some(r.key.process_guid.as_str()) == active
                && r.key.process_guid != shown.key.process_guid
                && r.presence == Presence::Ordinary
        }));
        let mut r = shown.clone();
        r.key.process_guid = app_process_guid.to_owned();
        out.push(r);
    }
    out.extend(hidden.into_iter().cloned());
    Ok(out)
}

impl Scheduler for DiegoScheduler {
    fn submit_task(&self, task: &TaskDefinition) -> Result<(), SchedulerError> {
        let def = recipes::task_definition(task, &self.default_stack).map_err(bbs_err)?;
        self.recording.submit_task(task)?;
        let now = self.bbs.now();
        let record = Task::new(&task.task_guid, &task.domain, def, now);
        record.validate().map_err(bbs_err)?;
        self.write(|tx| {
            let mut fx = Effects::default();
            if records::task(tx, &record.task_guid)?.is_none() {
                records::put_task(tx, &record)?;
                fx.task_starts.push(record.task_guid.clone());
            }
            Ok(fx)
        })
    }

    fn cancel_task(&self, task_guid: &str) -> Result<(), SchedulerError> {
        self.recording.cancel_task(task_guid)?;
        let now = self.bbs.now();
        self.write(|tx| {
            let mut fx = Effects::default();
            if let Some(mut t) = records::task(tx, task_guid)? {
                let cell = (t.state == TaskState::Running).then(|| t.cell_id.clone());
                if t.state != TaskState::Completed && t.state != TaskState::Resolving {
                    t.cancel(now)?;
                }
                records::delete_task(tx, task_guid)?;
                fx.cancels.extend(cell.map(|c| (c, task_guid.to_owned())));
            }
            Ok(fx)
        })
    }

    fn desire_lrp(&self, lrp: &DesiredLrp) -> Result<(), SchedulerError> {
        let desired = recipes::desired_lrp(lrp, &self.default_stack).map_err(bbs_err)?;
        let now = self.bbs.now();
        let generation = Generation {
            target_instances: desired.instances,
            desired,
            app_process_guid: lrp.process_guid.clone(),
            app_guid: lrp.app_guid.clone(),
            version: lrp.version.clone(),
            retiring: false,
        };
        self.write(|tx| {
            let mut fx = Effects::default();
            for mut g in records::generations(tx, &lrp.process_guid)? {
                if g.desired.process_guid == generation.desired.process_guid {
                    continue;
                }
                if !g.retiring {
                    g.retiring = true;
                    records::put_generation(tx, &g, now)?;
                }
            }
            let mut g = generation.clone();
            // Keep the running count of an existing generation; the rollout
            // decides how many it runs.
            if let Some(existing) = records::desired(tx, &g.desired.process_guid)? {
                g.desired.instances = existing.instances;
                g.desired.modification_tag = existing.modification_tag;
                g.desired.modification_tag.increment();
            } else {
                g.desired.instances = 0;
            }
            records::put_generation(tx, &g, now)?;
            fx.merge(rollout::advance(tx, &lrp.process_guid, now)?);
            Ok(fx)
        })?;
        tracing::info!(process_guid = %lrp.process_guid, version = %lrp.version, instances = lrp.instances, "lrp desired");
        Ok(())
    }

    fn scale_lrp(&self, process_guid: &str, instances: i64) -> Result<(), SchedulerError> {
        let now = self.bbs.now();
        let target = u32::try_from(instances.max(0)).unwrap_or(u32::MAX);
        let mut found = false;
        self.write(|tx| {
            let gens = records::generations(tx, process_guid)?;
            let Some(mut active) = gens.into_iter().find(|g| !g.retiring) else {
                return Ok(Effects::default());
            };
            found = true;
            active.target_instances = target;
            records::put_generation(tx, &active, now)?;
            rollout::advance(tx, process_guid, now)
        })?;
        if !found {
            return Err(SchedulerError::Unknown(format!(
                "desired LRP {process_guid}"
            )));
        }
        Ok(())
    }

    fn remove_lrp(&self, process_guid: &str) -> Result<(), SchedulerError> {
        self.write(|tx| {
            let mut fx = Effects::default();
            for g in records::generations(tx, process_guid)? {
                rollout::remove_generation(tx, &g.desired.process_guid, &mut fx)?;
            }
            Ok(fx)
        })
    }

    fn actual_lrps(&self, process_guid: &str) -> Result<Vec<ActualLrp>, SchedulerError> {
        let records = self
            .bbs
            .db()
            .read_blocking(|c| visible_per_index(c, process_guid))?;
        Ok(records.iter().map(|r| legacy(r, &self.bbs)).collect())
    }

    /// The pre-Diego report route (`PUT /internal/v1/actual_lrps/...`):
    /// applied to the active generation's record with diego's checked
    /// transitions, as an instance on the pseudo cell `reported:<host>`.
    fn report_actual(&self, actual: &ActualLrp) -> Result<(), SchedulerError> {
        let now = self.bbs.now();
        let unknown = || {
            SchedulerError::Unknown(format!(
                "desired LRP {} with index {}",
                actual.process_guid, actual.index
            ))
        };
        let index = u32::try_from(actual.index).map_err(|_| unknown())?;
        let instance = ActualLrpInstanceKey::new(
            format!("reported-{}-{index}", actual.process_guid),
            format!("reported:{}", actual.host),
        );
        let mut found = false;
        self.write(|tx| {
            let gens = records::generations(tx, &actual.process_guid)?;
            let Some(active) = gens.into_iter().find(|g| !g.retiring) else {
                return Ok(Effects::default());
            };
            let pg = &active.desired.process_guid;
            let Some(mut r) = records::actual(tx, pg, index, Presence::Ordinary)? else {
                return Ok(Effects::default());
            };
            found = true;
            let holder = r.instance_key.clone().unwrap_or_else(|| instance.clone());
            match actual.state.as_str() {
                "RUNNING" => {
                    let net = NetInfo {
                        address: actual.host.clone(),
                        instance_address: String::new(),
                        ports: actual
                            .port
                            .and_then(|p| u16::try_from(p).ok())
                            .map(|host_port| PortMapping {
                                container_port: crate::lrps::APP_PORT,
                                host_port,
                            })
                            .into_iter()
                            .collect(),
                    };
                    r.start(&holder, net, now)?;
                }
                "CLAIMED" => {
                    r.claim(&holder, now)?;
                }
                "CRASHED" => {
                    r.crash(&holder, "reported crashed", now)?;
                }
                _ => {
                    r.unclaim(now)?;
                }
            }
            records::put_actual(tx, &r)?;
            rollout::advance(tx, &actual.process_guid, now)
        })?;
        if !found {
            return Err(unknown());
        }
        let guid = format!("reported-{}-{index}", actual.process_guid);
        let cell = format!("reported:{}", actual.host);
        self.bbs.record_metrics(
            &cell,
            diego::rep::ContainerMetrics {
                process_guid: Some(actual.process_guid.clone()),
                index: Some(index),
                instance_guid: guid,
                cpu_fraction: actual.cpu,
                memory_bytes: u64::try_from(actual.mem).unwrap_or(0),
                memory_limit_bytes: 0,
                disk_bytes: u64::try_from(actual.disk).unwrap_or(0),
                disk_limit_bytes: 0,
                uptime_secs: 0,
            },
        );
        Ok(())
    }

    fn pending_tasks(&self) -> Result<Vec<TaskDefinition>, SchedulerError> {
        self.recording.pending_tasks()
    }
}
