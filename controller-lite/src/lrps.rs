//! Apps become LRPs: a STARTED app with a current droplet desires one LRP
//! per process type with instances; a STOPPED app desires none. Every app
//! change calls [`sync_app`], and startup calls [`sync_all`], so the
//! scheduler's desired state follows the database even after a crash
//! between the two writes.

use std::collections::BTreeMap;

use crate::blobstore::BlobKind;
use crate::db::builds::{self, Droplet};
use crate::db::{apps, routes, Db, DbError};
use crate::scheduler::{DesiredLrp, HealthCheck, Scheduler, SchedulerError};
use crate::staging::Staging;

/// Errors while syncing desired LRPs.
#[derive(Debug, thiserror::Error)]
pub enum LrpError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Scheduler failure.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// The app port every instance listens on.
pub const APP_PORT: u16 = 8080;

/// Builds the desired LRP of one process.
pub fn desired_lrp(
    staging: &Staging,
    app: &apps::App,
    process: &apps::Process,
    droplet: &Droplet,
    urls: &[String],
) -> DesiredLrp {
    let command = process
        .command
        .clone()
        .or_else(|| droplet.process_types.get(&process.kind).cloned())
        .unwrap_or_default();
    let vcap = serde_json::json!({
        "application_id": app.guid,
        "application_name": app.name,
        "application_uris": urls,
        "uris": urls,
        "space_id": app.space_guid,
        "process_id": process.guid,
        "process_type": process.kind,
        "limits": {"mem": process.memory_in_mb, "disk": process.disk_in_mb, "fds": 16384},
        "application_version": process.version,
    });
    let mut env: BTreeMap<String, String> = app.environment.clone();
    env.insert("VCAP_APPLICATION".into(), vcap.to_string());
    env.insert("VCAP_SERVICES".into(), "{}".into());
    env.insert("MEMORY_LIMIT".into(), format!("{}m", process.memory_in_mb));
    env.insert("PORT".into(), APP_PORT.to_string());
    env.insert("LANG".into(), "en_US.UTF-8".into());
    DesiredLrp {
        process_guid: process.guid.clone(),
        app_guid: app.guid.clone(),
        process_type: process.kind.clone(),
        version: process.version.clone(),
        instances: process.instances,
        memory_mb: process.memory_in_mb,
        disk_mb: process.disk_in_mb,
        stack: droplet.stack.clone(),
        droplet: droplet
            .blob
            .as_ref()
            .map(|b| staging.location(BlobKind::Droplet, b)),
        docker_image: droplet.docker_image.clone(),
        start_command: command,
        env,
        ports: vec![APP_PORT],
        health_check: HealthCheck {
            kind: process.health_check_type.clone(),
            endpoint: process.health_check_endpoint.clone(),
            timeout_secs: process.health_check_timeout,
            invocation_timeout_secs: process.health_check_invocation_timeout,
        },
        routes: if process.kind == "web" {
            urls.to_vec()
        } else {
            Vec::new()
        },
        log_source_id: app.guid.clone(),
        egress_rules: staging.app_egress_rules().to_vec(),
    }
}

/// Makes the scheduler's desired LRPs of one app match the database.
/// Blocking.
pub fn sync_app(
    db: &Db,
    scheduler: &dyn Scheduler,
    staging: &Staging,
    app_guid: &str,
) -> Result<(), LrpError> {
    let Some(app) = db.read_blocking(|c| apps::get_app(c, app_guid))? else {
        return Ok(());
    };
    let processes = db.read_blocking(|c| apps::app_processes(c, app_guid))?;
    let droplet = match &app.droplet_guid {
        Some(g) => db.read_blocking(|c| builds::get_droplet(c, g))?,
        None => None,
    };
    let urls = db.read_blocking(|c| routes::app_urls(c, app_guid))?;
    for process in &processes {
        match (&droplet, app.state.as_str()) {
            (Some(d), "STARTED") if process.instances > 0 => {
                scheduler.desire_lrp(&desired_lrp(staging, &app, process, d, &urls))?;
            }
            _ => scheduler.remove_lrp(&process.guid)?,
        }
    }
    Ok(())
}

/// Removes the LRPs of processes (before their app is deleted).
pub fn remove_all(scheduler: &dyn Scheduler, processes: &[apps::Process]) -> Result<(), LrpError> {
    for p in processes {
        scheduler.remove_lrp(&p.guid)?;
    }
    Ok(())
}

/// [`sync_app`] for every app (at startup).
pub fn sync_all(db: &Db, scheduler: &dyn Scheduler, staging: &Staging) -> Result<usize, LrpError> {
    let page = crate::db::query::Page {
        per_page: i64::MAX as u64,
        ..Default::default()
    };
    let all = db.read_blocking(|c| apps::list_apps(c, &[], None, &page))?;
    for app in &all.items {
        sync_app(db, scheduler, staging, &app.guid)?;
    }
    Ok(all.items.len())
}
