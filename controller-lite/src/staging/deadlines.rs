//! Deadlines: a build still STAGING after `staging.timeout_secs` and an app
//! task not finished after `tasks.timeout_secs` fail with a clear reason,
//! and their scheduler task is cancelled. The sweeper calls
//! [`Staging::expire_overdue`]; the clock is injected, so tests move time.

use super::{Completion, Staging, StagingError};
use crate::db::{builds, scheduler as rows, tasks};
use crate::states::TaskState;

impl Staging {
    /// The deadline of an app task created now.
    pub fn task_deadline(&self) -> i64 {
        self.clock
            .now()
            .saturating_add(self.settings.task_timeout_secs)
    }

    /// Fails every build still STAGING and every app task still unfinished
    /// past its deadline; returns their guids (builds first).
    pub fn expire_overdue(&self) -> Result<Vec<String>, StagingError> {
        let mut failed = self.expire_builds()?;
        failed.extend(self.expire_tasks()?);
        Ok(failed)
    }

    fn expire_builds(&self) -> Result<Vec<String>, StagingError> {
        let now = self.clock.now();
        let overdue = self.db.read_blocking(|c| builds::overdue_builds(c, now))?;
        let mut failed = Vec::new();
        for guid in overdue {
            let error = format!(
                "StagingTimeout - staging did not finish within {} seconds",
                self.settings.timeout_secs
            );
            let e = error.clone();
            let g = guid.clone();
            let changed = self.db.write_blocking(move |tx| {
                let changed = builds::mark_failed(tx, &g, &e)?;
                rows::complete_task(tx, &g, true, Some(&e), None)?;
                Ok(changed)
            })?;
            if changed {
                self.scheduler.cancel_task(&guid)?;
                self.log_completion(&guid, &Completion::BuildFailed { error })?;
                failed.push(guid);
            }
        }
        Ok(failed)
    }

    fn expire_tasks(&self) -> Result<Vec<String>, StagingError> {
        let now = self.clock.now();
        let limit = self.settings.task_timeout_secs;
        let overdue = self.db.read_blocking(|c| tasks::overdue(c, now, limit))?;
        let mut failed = Vec::new();
        for guid in overdue {
            let reason = format!("TaskTimeout - task did not finish within {limit} seconds");
            let g = guid.clone();
            let r = reason.clone();
            let changed = self.db.write_blocking(move |tx| {
                let changed = tasks::transition(tx, &g, TaskState::Failed, Some(&r))?;
                if changed {
                    rows::complete_task(tx, &g, true, Some(&r), None)?;
                }
                Ok(changed)
            })?;
            if changed {
                self.scheduler.cancel_task(&guid)?;
                tracing::warn!(task_guid = %guid, %reason, "task timed out");
                failed.push(guid);
            }
        }
        Ok(failed)
    }
}
