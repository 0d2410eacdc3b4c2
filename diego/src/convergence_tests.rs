use super::*;
use crate::models::action::{Action, RunAction};
use crate::models::actual_lrp::NetInfo;
use crate::models::task::TaskDefinition;

const NOW: i64 = 1_000_000;

fn now() -> Timestamp {
    Timestamp::from_unix_secs(NOW)
}

fn ago(secs: u64) -> Timestamp {
    now() - Duration::from_secs(secs)
}

fn desired(guid: &str, instances: u32) -> DesiredLrp {
    let mut d = DesiredLrp::new(guid, "cf-apps", Action::Run(RunAction::default()));
    d.instances = instances;
    d.rootfs = "preloaded:cflinuxfs4".into();
    d.memory_mb = 256;
    d
}

fn key(guid: &str, index: u32) -> ActualLrpKey {
    ActualLrpKey::new(guid, index, "cf-apps")
}

fn instance(cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey::new(format!("ig-{cell}"), cell)
}

fn unclaimed(guid: &str, index: u32, since: Timestamp) -> ActualLrp {
    ActualLrp::new_unclaimed(key(guid, index), since)
}

fn claimed(guid: &str, index: u32, cell: &str) -> ActualLrp {
    let mut lrp = unclaimed(guid, index, ago(100));
    lrp.claim(&instance(cell), ago(50)).expect("claim");
    lrp
}

fn running(guid: &str, index: u32, cell: &str) -> ActualLrp {
    let mut lrp = unclaimed(guid, index, ago(100));
    lrp.start(&instance(cell), NetInfo::default(), ago(50))
        .expect("start");
    lrp
}

fn crashed(guid: &str, index: u32, crash_count: u32, secs_ago: u64) -> ActualLrp {
    let mut lrp = unclaimed(guid, index, ago(secs_ago));
    lrp.state = ActualLrpState::Crashed;
    lrp.crash_count = crash_count;
    lrp
}

fn with_presence(mut lrp: ActualLrp, presence: Presence) -> ActualLrp {
    lrp.presence = presence;
    lrp
}

fn cells(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn plan_of(desired: &[DesiredLrp], actual: &[ActualLrp], present: &[&str]) -> Plan {
    converge(
        now(),
        desired,
        actual,
        &[],
        &cells(present),
        &ConvergenceConfig::default(),
    )
}

fn starts(plan: &Plan) -> Vec<(String, StartReason)> {
    (plan.starts.iter())
        .map(|s| (s.start.key.to_string(), s.reason))
        .collect()
}

fn retired(plan: &Plan) -> Vec<(String, Presence, Option<&str>, RetireReason)> {
    (plan.retire.iter())
        .map(|r| {
            let cell = r.stop_on_cell.as_deref();
            (r.record.key.to_string(), r.record.presence, cell, r.reason)
        })
        .collect()
}

#[test]
fn steady_state_plans_nothing() {
    let actual = [running("web", 0, "c1"), running("web", 1, "c2")];
    let plan = plan_of(&[desired("web", 2)], &actual, &["c1", "c2"]);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn missing_indices_are_created_and_started() {
    let plan = plan_of(&[desired("web", 3)], &[running("web", 1, "c1")], &["c1"]);
    assert_eq!(plan.create_unclaimed, [key("web", 0), key("web", 2)]);
    assert_eq!(
        starts(&plan),
        [
            ("web/0".into(), StartReason::MissingInstance),
            ("web/2".into(), StartReason::MissingInstance),
        ]
    );
    let start = &plan.starts[0].start;
    assert_eq!(start.resource.memory_mb, 256);
    assert_eq!(start.constraint.rootfs, "preloaded:cflinuxfs4");
}

#[test]
fn extra_instances_and_orphans_are_retired() {
    let actual = [
        running("web", 0, "c1"),
        running("web", 1, "c1"),
        unclaimed("web", 2, now()),
        running("web", 3, "gone"),
        running("old", 0, "c2"),
        crashed("old", 1, 5, 10),
    ];
    let plan = plan_of(&[desired("web", 1)], &actual, &["c1", "c2"]);
    assert_eq!(
        retired(&plan),
        [
            (
                "old/0".into(),
                Presence::Ordinary,
                Some("c2"),
                RetireReason::Orphan
            ),
            (
                "old/1".into(),
                Presence::Ordinary,
                None,
                RetireReason::Orphan
            ),
            (
                "web/1".into(),
                Presence::Ordinary,
                Some("c1"),
                RetireReason::Extra
            ),
            (
                "web/2".into(),
                Presence::Ordinary,
                None,
                RetireReason::Extra
            ),
            (
                "web/3".into(),
                Presence::Ordinary,
                None,
                RetireReason::Extra
            ),
        ]
    );
    assert!(plan.starts.is_empty());
    let plan = plan_of(&[desired("web", 0)], &actual[..1], &["c1"]);
    assert_eq!(plan.retire.len(), 1, "scaled to zero");
}

#[test]
fn stale_unclaimed_is_auctioned_again_after_30_s() {
    let actual = [unclaimed("web", 0, ago(30)), unclaimed("web", 1, ago(31))];
    let plan = plan_of(&[desired("web", 2)], &actual, &[]);
    assert_eq!(
        starts(&plan),
        [("web/1".into(), StartReason::StaleUnclaimed)]
    );
    assert!(plan.create_unclaimed.is_empty());
}

#[test]
fn claimed_on_a_missing_cell_is_unclaimed_and_started() {
    let actual = [claimed("web", 0, "gone"), claimed("web", 1, "c1")];
    let plan = plan_of(&[desired("web", 2)], &actual, &["c1"]);
    assert_eq!(plan.unclaim, [RecordRef::of(&actual[0])]);
    assert_eq!(starts(&plan), [("web/0".into(), StartReason::CellLost)]);
}

#[test]
fn running_on_a_missing_cell_becomes_suspect_with_a_replacement() {
    let actual = [running("web", 0, "gone"), running("web", 1, "c1")];
    let plan = plan_of(&[desired("web", 2)], &actual, &["c1"]);
    assert_eq!(plan.suspect, [RecordRef::of(&actual[0])]);
    assert_eq!(plan.suspect[0].instance_key, Some(instance("gone")));
    assert_eq!(starts(&plan), [("web/0".into(), StartReason::CellLost)]);
    assert!(plan.unclaim.is_empty());
}

#[test]
fn a_replacement_lost_too_is_unclaimed_while_the_suspect_stays() {
    let suspect = with_presence(running("web", 0, "gone-1"), Presence::Suspect);
    let actual = [suspect, running("web", 0, "gone-2")];
    let plan = plan_of(&[desired("web", 1)], &actual, &[]);
    assert!(plan.suspect.is_empty());
    assert_eq!(plan.unclaim, [RecordRef::of(&actual[1])]);
    assert_eq!(starts(&plan), [("web/0".into(), StartReason::CellLost)]);
    assert!(plan.retire.is_empty());
}

#[test]
fn suspect_is_retired_once_its_replacement_runs() {
    let suspect = with_presence(running("web", 0, "gone"), Presence::Suspect);
    let actual = [suspect, running("web", 0, "c1")];
    let plan = plan_of(&[desired("web", 1)], &actual, &["c1"]);
    assert_eq!(
        retired(&plan),
        [(
            "web/0".into(),
            Presence::Suspect,
            None,
            RetireReason::Replaced
        )]
    );
    assert!(plan.starts.is_empty());

    let waiting = [actual[0].clone(), claimed("web", 0, "c1")];
    let plan = plan_of(&[desired("web", 1)], &waiting, &["c1"]);
    assert!(plan.is_empty(), "replacement still starting: wait");
}

#[test]
fn suspect_whose_cell_returns_becomes_ordinary_again() {
    let suspect = with_presence(running("web", 0, "back"), Presence::Suspect);
    let actual = [suspect.clone(), claimed("web", 0, "c1")];
    let plan = plan_of(&[desired("web", 1)], &actual, &["c1", "back"]);
    assert_eq!(
        retired(&plan),
        [(
            "web/0".into(),
            Presence::Ordinary,
            Some("c1"),
            RetireReason::SuspectReturned
        )]
    );
    assert_eq!(plan.unsuspect, [RecordRef::of(&suspect)]);
    assert!(plan.starts.is_empty());

    let plan = plan_of(
        &[desired("web", 1)],
        std::slice::from_ref(&suspect),
        &["back"],
    );
    assert_eq!(plan.unsuspect, [RecordRef::of(&suspect)]);
    assert!(plan.create_unclaimed.is_empty());

    let plan = plan_of(&[desired("web", 1)], &[suspect], &[]);
    assert_eq!(
        plan.create_unclaimed,
        [key("web", 0)],
        "suspect alone, cell gone"
    );
}

#[test]
fn evacuating_is_retired_once_its_replacement_runs_or_its_cell_is_gone() {
    let evacuating = with_presence(running("web", 0, "draining"), Presence::Evacuating);
    let replaced = [evacuating.clone(), running("web", 0, "c1")];
    let plan = plan_of(&[desired("web", 1)], &replaced, &["c1", "draining"]);
    assert_eq!(
        retired(&plan),
        [(
            "web/0".into(),
            Presence::Evacuating,
            Some("draining"),
            RetireReason::Replaced
        )]
    );

    let waiting = [evacuating.clone(), unclaimed("web", 0, ago(5))];
    let plan = plan_of(&[desired("web", 1)], &waiting, &["draining"]);
    assert!(
        plan.is_empty(),
        "replacement not running yet: keep evacuating"
    );

    let plan = plan_of(&[desired("web", 1)], &waiting, &[]);
    assert_eq!(
        retired(&plan),
        [(
            "web/0".into(),
            Presence::Evacuating,
            None,
            RetireReason::CellLost
        )]
    );
}

#[test]
fn crashed_instances_restart_when_the_back_off_allows() {
    let actual = [
        crashed("web", 0, 3, 31),          // 30 s back-off passed
        crashed("web", 1, 3, 29),          // not yet
        crashed("web", 2, 8, 961),         // 16 min passed
        crashed("web", 3, 201, 1_000_000), // never
    ];
    let plan = plan_of(&[desired("web", 4)], &actual, &[]);
    assert_eq!(
        starts(&plan),
        [
            ("web/0".into(), StartReason::CrashedRestart),
            ("web/2".into(), StartReason::CrashedRestart),
        ]
    );
    assert_eq!(
        plan.restart_crashed,
        [RecordRef::of(&actual[0]), RecordRef::of(&actual[2])]
    );
}

fn task_at(guid: &str, state: TaskState, updated_secs_ago: u64) -> Task {
    let def = TaskDefinition::new("preloaded:cflinuxfs4", Action::Run(RunAction::default()));
    let mut t = Task::new(guid, "cf-tasks", def, ago(updated_secs_ago));
    t.state = state;
    if matches!(state, TaskState::Completed | TaskState::Resolving) {
        t.first_completed_at = Some(t.updated_at);
    }
    t
}

#[test]
fn tasks_expire_fail_and_get_kicked() {
    let mut on_lost = task_at("running-lost", TaskState::Running, 5);
    on_lost.cell_id = "gone".into();
    let mut on_present = task_at("running-ok", TaskState::Running, 5);
    on_present.cell_id = "c1".into();
    let mut rejected = task_at("rejected", TaskState::Pending, 1);
    rejected.rejection_count = 3;
    rejected.rejection_reason = "insufficient resources: memory".into();
    let mut with_callback = task_at("callback", TaskState::Completed, 31);
    with_callback.definition.completion_callback_url = "http://cc/callback".into();
    let tasks = [
        task_at("pending-new", TaskState::Pending, 10),
        task_at("pending-kick", TaskState::Pending, 31),
        task_at("pending-old", TaskState::Pending, 30 * 60 + 1),
        rejected,
        on_lost,
        on_present,
        task_at("completed-new", TaskState::Completed, 31),
        with_callback,
        task_at("completed-old", TaskState::Completed, 121),
        task_at("resolving-stuck", TaskState::Resolving, 31),
        task_at("resolving-old", TaskState::Resolving, 121),
    ];
    let plan = converge(
        now(),
        &[],
        &[],
        &tasks,
        &cells(&["c1"]),
        &ConvergenceConfig::default(),
    );
    let failed: Vec<(&str, &str)> = (plan.tasks.fail.iter())
        .map(|f| (f.task_guid.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("pending-old", "not started within time limit"),
            (
                "rejected",
                "task was rejected 3 times: insufficient resources: memory"
            ),
            ("running-lost", "cell disappeared before completion"),
        ]
    );
    let auctioned: Vec<&str> = plan
        .tasks
        .auction
        .iter()
        .map(|t| t.task_guid.as_str())
        .collect();
    assert_eq!(auctioned, ["pending-kick"]);
    assert_eq!(plan.tasks.resend_callbacks, ["callback"]);
    assert_eq!(plan.tasks.demote, ["resolving-stuck"]);
    assert_eq!(plan.tasks.delete, ["completed-old", "resolving-old"]);
}

#[test]
fn plans_are_reproducible_and_serialisable() {
    let actual = [running("web", 0, "gone"), crashed("web", 1, 1, 0)];
    let a = plan_of(&[desired("web", 3)], &actual, &[]);
    let b = plan_of(&[desired("web", 3)], &actual, &[]);
    assert_eq!(a, b);
    let v = serde_json::to_value(&a).expect("json");
    assert_eq!(v["starts"][0]["reason"], "cell_lost");
    assert_eq!(serde_json::from_value::<Plan>(v).expect("parse"), a);
}
