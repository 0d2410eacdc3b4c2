use super::*;
use crate::models::action::RunAction;
use crate::models::security_group::{SecurityGroupError, SecurityProtocol};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn pending() -> Task {
    let mut def = TaskDefinition::new(
        "preloaded:cflinuxfs4",
        Action::Run(RunAction {
            path: "/bin/true".into(),
            ..RunAction::default()
        }),
    );
    def.annotation = "build-1".into();
    Task::new("tg-1", "cf-tasks", def, t(0))
}

fn running() -> Task {
    let mut task = pending();
    task.start("cell-1", t(1)).expect("start");
    task
}

#[test]
fn lifecycle_graph() {
    use TaskState::*;
    let all = [Pending, Running, Completed, Resolving];
    let legal = [
        (Pending, Running),
        (Pending, Completed),
        (Running, Completed),
        (Running, Pending),
        (Completed, Resolving),
        (Resolving, Completed),
    ];
    for from in all {
        for to in all {
            assert_eq!(
                from.can_transition_to(to),
                legal.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn happy_path_to_deletion() {
    let mut task = pending();
    assert_eq!(task.validate(), Ok(()));
    assert_eq!(task.start("cell-1", t(1)), Ok(Outcome::Changed));
    assert_eq!(task.start("cell-1", t(2)), Ok(Outcome::Unchanged));
    assert_eq!(
        (task.state, task.cell_id.as_str()),
        (TaskState::Running, "cell-1")
    );
    assert_eq!(
        task.complete("cell-1", false, "ignored", "42", t(3)),
        Ok(Outcome::Changed)
    );
    assert_eq!(task.state, TaskState::Completed);
    assert!(!task.failed);
    assert_eq!(task.failure_reason, "");
    assert_eq!(task.result, "42");
    assert_eq!(task.first_completed_at, Some(t(3)));
    assert_eq!(task.resolve(t(4)), Ok(Outcome::Changed));
    assert_eq!(task.delete(), Ok(()));
    let cb = task.callback();
    assert_eq!(
        serde_json::to_value(&cb).expect("json"),
        serde_json::json!({"task_guid": "tg-1", "failed": false, "failure_reason": "",
            "result": "42", "annotation": "build-1", "created_at": 0})
    );
}

#[test]
fn illegal_transitions_are_typed_errors() {
    let mut task = pending();
    let err = task
        .complete("cell-1", false, "", "", t(1))
        .expect_err("pending");
    assert_eq!(
        err.to_string(),
        "task tg-1: cannot go from PENDING to COMPLETED"
    );
    assert!(task.resolve(t(1)).is_err());
    assert!(task.demote(t(1)).is_err());
    assert_eq!(
        task.delete().expect_err("pending").to_string(),
        "task tg-1: only a RESOLVING task may be deleted, it is PENDING"
    );

    let mut task = running();
    assert!(matches!(
        task.start("cell-2", t(2)),
        Err(TaskError::CellMismatch { .. })
    ));
    assert!(matches!(
        task.complete("cell-2", false, "", "", t(2)),
        Err(TaskError::CellMismatch { .. })
    ));
    assert!(task.reject("cell-2", "full", 3, t(2)).is_err());
    task.complete("cell-1", true, "exit 1", "", t(3))
        .expect("complete");
    assert!(task.start("cell-1", t(4)).is_err());
    assert!(task.fail("x", t(4)).is_err());
    assert!(task.cancel(t(4)).is_err());
    assert!(task.reject("cell-1", "x", 3, t(4)).is_err());
    assert_eq!(task.failure_reason, "exit 1");
}

#[test]
fn result_keeps_the_first_10_kb_on_a_char_boundary() {
    let mut task = running();
    let long = "é".repeat(MAX_RESULT_BYTES);
    task.complete("cell-1", false, "", &long, t(2))
        .expect("complete");
    assert!(task.result.len() <= MAX_RESULT_BYTES);
    assert_eq!(task.result.len(), MAX_RESULT_BYTES);
    assert_eq!(truncate_result("abc"), "abc");
}

#[test]
fn fail_and_cancel_from_pending_and_running() {
    let mut task = pending();
    task.fail(NOT_STARTED_IN_TIME, t(5)).expect("fail");
    assert!(task.failed);
    assert_eq!(task.failure_reason, NOT_STARTED_IN_TIME);
    let mut task = running();
    task.cancel(t(5)).expect("cancel");
    assert_eq!(
        (task.state, task.failure_reason.as_str()),
        (TaskState::Completed, CANCELLED)
    );
}

#[test]
fn third_rejection_fails_the_task() {
    let mut task = running();
    task.reject("cell-1", "insufficient resources: memory", 3, t(2))
        .expect("reject");
    assert_eq!((task.state, task.rejection_count), (TaskState::Pending, 1));
    assert_eq!(task.cell_id, "");
    task.reject("cell-3", "full", 3, t(3))
        .expect("reject while pending");
    assert_eq!(task.state, TaskState::Pending);
    task.start("cell-2", t(4)).expect("start");
    task.reject("cell-2", "full", 3, t(5)).expect("reject");
    assert_eq!(task.state, TaskState::Completed);
    assert!(task.failed);
    assert_eq!(task.failure_reason, "task was rejected 3 times: full");
}

#[test]
fn demote_returns_to_completed_and_keeps_first_completion() {
    let mut task = running();
    task.complete("cell-1", false, "", "", t(2))
        .expect("complete");
    task.resolve(t(3)).expect("resolve");
    assert_eq!(task.demote(t(40)), Ok(Outcome::Changed));
    assert_eq!(task.state, TaskState::Completed);
    assert_eq!(task.first_completed_at, Some(t(2)));
    assert_eq!(task.updated_at, t(40));
}

#[test]
fn validation_names_the_field() {
    let mut task = pending();
    task.definition.rootfs.clear();
    assert_eq!(
        task.validate().expect_err("rootfs").to_string(),
        "task \"tg-1\": rootfs must not be empty"
    );
    let mut task = pending();
    task.definition.annotation = "a".repeat(MAX_ANNOTATION_BYTES + 1);
    assert!(matches!(task.validate(), Err(TaskError::Annotation { .. })));
    let mut task = pending();
    let dns = SecurityGroupRule::new(SecurityProtocol::Udp, &["0.0.0.0/0"]);
    task.definition.egress_rules = vec![dns];
    assert_eq!(
        task.validate(),
        Err(TaskError::EgressRule {
            task_guid: "tg-1".into(),
            index: 0,
            source: SecurityGroupError::NoPorts {
                protocol: SecurityProtocol::Udp
            },
        })
    );
    task.definition.egress_rules[0].ports = vec![53];
    assert_eq!(task.validate(), Ok(()));
}

#[test]
fn json_round_trip() {
    let task = running();
    let v = serde_json::to_value(&task).expect("json");
    assert_eq!(v["state"], "RUNNING");
    assert_eq!(
        serde_json::from_value::<Task>(v.clone()).expect("parse"),
        task
    );
    let mut old = v;
    old["definition"]
        .as_object_mut()
        .expect("definition")
        .remove("egress_rules");
    let parsed = serde_json::from_value::<Task>(old).expect("a record without egress_rules");
    assert!(parsed.definition.egress_rules.is_empty());
}
