//! Diego's work as the executor takes it: the resources and run request of
//! one LRP instance or one Task, as the rep builds them from `/work`.

use std::collections::BTreeMap;
use std::time::Duration;

use diego::models::action::EnvVar;
use diego::models::{DesiredLrp, TaskDefinition};

use super::container::{LogConfig, Resources, RunRequest};

/// Tag keys the conversions below set (the rep finds its work by them).
pub mod tags {
    /// `lrp` or `task`.
    pub const LIFECYCLE: &str = "lifecycle";
    /// The LRP's process guid.
    pub const PROCESS_GUID: &str = "process-guid";
    /// The LRP instance's index.
    pub const INDEX: &str = "index";
    /// The LRP instance's guid (the container's guid).
    pub const INSTANCE_GUID: &str = "instance-guid";
    /// The Task's guid.
    pub const TASK_GUID: &str = "task-guid";
    /// The work's domain.
    pub const DOMAIN: &str = "domain";
}

fn env(vars: &[EnvVar]) -> Vec<String> {
    vars.iter()
        .map(|v| format!("{}={}", v.name, v.value))
        .collect()
}

impl Resources {
    /// What one instance of `lrp` takes.
    pub fn of_lrp(lrp: &DesiredLrp) -> Self {
        Self {
            memory_mb: lrp.memory_mb,
            disk_mb: lrp.disk_mb,
            max_pids: u64::from(lrp.max_pids),
        }
    }

    /// What `task` takes.
    pub fn of_task(task: &TaskDefinition) -> Self {
        Self {
            memory_mb: task.memory_mb,
            disk_mb: task.disk_mb,
            max_pids: u64::from(task.max_pids),
        }
    }
}

impl RunRequest {
    /// Instance `index` of `lrp` in container `instance_guid`: its setup,
    /// its action codependent with its checks (none, or an empty
    /// definition: the `process` check), its ports, and the instance
    /// variables CF apps read (`INSTANCE_INDEX`, `CF_INSTANCE_INDEX`,
    /// `CF_INSTANCE_GUID`), its egress rules. A legacy `monitor` action is not run: without
    /// a check definition the instance gets the `process` check.
    pub fn for_lrp(lrp: &DesiredLrp, index: u32, instance_guid: &str) -> Self {
        let mut env = env(&lrp.env);
        env.push(format!("INSTANCE_INDEX={index}"));
        env.push(format!("CF_INSTANCE_INDEX={index}"));
        env.push(format!("CF_INSTANCE_GUID={instance_guid}"));
        let mut request = Self::new(lrp.rootfs.clone(), lrp.action.clone());
        request.env = env;
        request.setup = lrp.setup.clone();
        request.monitor = Some(lrp.check_definition.clone().unwrap_or_default());
        request.start_timeout =
            (lrp.start_timeout_ms > 0).then(|| Duration::from_millis(lrp.start_timeout_ms));
        request.ports = lrp.ports.clone();
        request.egress_rules = lrp.egress_rules.clone();
        request.log = LogConfig {
            guid: lrp.log_guid.clone(),
            source_name: "CELL".into(),
            source_instance: index.to_string(),
        };
        request
    }

    /// `task`: its action, its result file, its log source, its egress
    /// rules.
    pub fn for_task(task: &TaskDefinition) -> Self {
        let mut request = Self::new(task.rootfs.clone(), task.action.clone());
        request.env = env(&task.env);
        request.result_file = (!task.result_file.is_empty()).then(|| task.result_file.clone());
        request.egress_rules = task.egress_rules.clone();
        request.log = LogConfig {
            guid: task.log_guid.clone(),
            source_name: task.log_source.clone(),
            source_instance: "0".into(),
        };
        request
    }
}

/// The tags of instance `index` of `lrp` in container `instance_guid`.
pub fn lrp_tags(lrp: &DesiredLrp, index: u32, instance_guid: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::LIFECYCLE.to_owned(), "lrp".to_owned()),
        (tags::PROCESS_GUID.to_owned(), lrp.process_guid.clone()),
        (tags::INDEX.to_owned(), index.to_string()),
        (tags::INSTANCE_GUID.to_owned(), instance_guid.to_owned()),
        (tags::DOMAIN.to_owned(), lrp.domain.clone()),
    ])
}

/// The tags of task `task_guid` in `domain`.
pub fn task_tags(task_guid: &str, domain: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::LIFECYCLE.to_owned(), "task".to_owned()),
        (tags::TASK_GUID.to_owned(), task_guid.to_owned()),
        (tags::DOMAIN.to_owned(), domain.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use diego::models::action::{Action, RunAction};

    use diego::models::CheckDefinition;

    use super::*;
    use crate::executor::ContainerKind;

    fn run() -> Action {
        Action::Run(RunAction {
            path: "/bin/true".into(),
            ..RunAction::default()
        })
    }

    #[test]
    fn an_lrp_instance_is_an_lrp_with_its_checks_and_instance_env() {
        let mut lrp = DesiredLrp::new("web-v1", "cf-apps", run());
        lrp.rootfs = "preloaded:cflinuxfs4".into();
        lrp.memory_mb = 256;
        lrp.max_pids = 100;
        lrp.ports = vec![8080];
        lrp.start_timeout_ms = 5000;
        lrp.env = vec![EnvVar {
            name: "A".into(),
            value: "1".into(),
        }];
        lrp.egress_rules = vec![diego::models::SecurityGroupRule::new(
            diego::models::SecurityProtocol::All,
            &["10.0.0.0/8"],
        )];
        let request = RunRequest::for_lrp(&lrp, 2, "inst-1");
        assert_eq!(request.kind(), ContainerKind::Lrp);
        assert_eq!(request.egress_rules, lrp.egress_rules);
        assert_eq!(request.monitor, Some(CheckDefinition::default()));
        assert_eq!(request.start_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            request.env,
            [
                "A=1",
                "INSTANCE_INDEX=2",
                "CF_INSTANCE_INDEX=2",
                "CF_INSTANCE_GUID=inst-1"
            ]
        );
        assert_eq!(request.log.source_instance, "2");
        assert_eq!(Resources::of_lrp(&lrp).max_pids, 100);
        let tags = lrp_tags(&lrp, 2, "inst-1");
        assert_eq!(tags[tags::PROCESS_GUID], "web-v1");
        assert_eq!(tags[tags::INDEX], "2");
    }

    #[test]
    fn a_task_is_a_task_with_its_result_file() {
        let mut task = TaskDefinition::new("preloaded:cflinuxfs4", run());
        task.result_file = "/tmp/result.json".into();
        task.log_source = "STG".into();
        task.egress_rules = vec![diego::models::SecurityGroupRule::new(
            diego::models::SecurityProtocol::All,
            &["0.0.0.0/0"],
        )];
        let request = RunRequest::for_task(&task);
        assert_eq!(request.egress_rules, task.egress_rules);
        assert_eq!(request.kind(), ContainerKind::Task);
        assert_eq!(request.result_file.as_deref(), Some("/tmp/result.json"));
        assert_eq!(request.log.source_name, "STG");
        task.result_file.clear();
        assert_eq!(RunRequest::for_task(&task).result_file, None);
        assert_eq!(task_tags("t1", "cf-tasks")[tags::TASK_GUID], "t1");
    }
}
