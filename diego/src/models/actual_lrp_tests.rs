use std::time::Duration;

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn unclaimed() -> ActualLrp {
    ActualLrp::new_unclaimed(ActualLrpKey::new("pg", 0, "cf-apps"), t(0))
}

fn cell(n: u32) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey::new(format!("ig-{n}"), format!("cell-{n}"))
}

fn net() -> NetInfo {
    NetInfo {
        address: "10.0.0.1".into(),
        instance_address: "10.255.0.2".into(),
        ports: vec![PortMapping {
            container_port: 8080,
            host_port: 61000,
        }],
    }
}

fn running() -> ActualLrp {
    let mut lrp = unclaimed();
    lrp.claim(&cell(1), t(1)).expect("claim");
    lrp.start(&cell(1), net(), t(2)).expect("start");
    lrp
}

#[test]
fn state_graph_is_reference_section_2() {
    use ActualLrpState::*;
    let all = [Unclaimed, Claimed, Running, Crashed];
    let legal = [
        (Unclaimed, Claimed),
        (Unclaimed, Running),
        (Claimed, Claimed),
        (Claimed, Running),
        (Claimed, Crashed),
        (Claimed, Unclaimed),
        (Running, Running),
        (Running, Crashed),
        (Running, Unclaimed),
        (Running, Claimed),
        (Crashed, Unclaimed),
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
fn claim_then_start_then_idempotent_repeats() {
    let mut lrp = unclaimed();
    lrp.placement_error = "insufficient resources: memory".into();
    assert_eq!(lrp.claim(&cell(1), t(1)), Ok(Outcome::Changed));
    assert_eq!(lrp.state, ActualLrpState::Claimed);
    assert_eq!(lrp.cell_id(), Some("cell-1"));
    assert!(lrp.placement_error.is_empty());
    assert_eq!(lrp.claim(&cell(1), t(2)), Ok(Outcome::Unchanged));
    assert_eq!(lrp.start(&cell(1), net(), t(3)), Ok(Outcome::Changed));
    assert_eq!(lrp.state, ActualLrpState::Running);
    assert_eq!(lrp.since, t(3));
    assert!(lrp.is_routable());
    assert_eq!(lrp.start(&cell(1), net(), t(4)), Ok(Outcome::Unchanged));
    let mut other = net();
    other.address = "10.0.0.9".into();
    assert_eq!(lrp.start(&cell(1), other, t(5)), Ok(Outcome::Changed));
    assert_eq!(lrp.since, t(3), "a net info update keeps since");
    assert_eq!(lrp.modification_tag.index, 3);
}

#[test]
fn start_straight_from_unclaimed() {
    let mut lrp = unclaimed();
    assert_eq!(lrp.start(&cell(2), net(), t(1)), Ok(Outcome::Changed));
    assert_eq!(lrp.instance_key, Some(cell(2)));
}

#[test]
fn running_may_be_claimed_again_by_its_own_instance_only() {
    let mut lrp = running();
    assert!(matches!(
        lrp.claim(&cell(2), t(5)),
        Err(ActualLrpError::InstanceMismatch { .. })
    ));
    assert_eq!(lrp.claim(&cell(1), t(5)), Ok(Outcome::Changed));
    assert_eq!(lrp.state, ActualLrpState::Claimed);
    assert_eq!(lrp.net_info, None);
}

#[test]
fn another_cell_cannot_take_a_claimed_slot() {
    let mut lrp = unclaimed();
    lrp.claim(&cell(1), t(1)).expect("claim");
    let err = lrp.claim(&cell(2), t(2)).expect_err("mismatch");
    assert_eq!(
        err.to_string(),
        "actual LRP pg/0: held by ig-1 on cell-1, not by ig-2 on cell-2"
    );
    assert!(lrp.start(&cell(2), net(), t(2)).is_err());
    assert!(lrp.crash(&cell(2), "x", t(2)).is_err());
    assert_eq!(lrp.state, ActualLrpState::Claimed);
}

#[test]
fn crashes_one_and_two_restart_at_once_then_back_off() {
    let mut lrp = running();
    assert_eq!(
        lrp.crash(&cell(1), "exited", t(10)),
        Ok(CrashOutcome::RestartNow)
    );
    assert_eq!(lrp.state, ActualLrpState::Unclaimed);
    assert_eq!((lrp.crash_count, lrp.crash_reason.as_str()), (1, "exited"));
    assert_eq!(lrp.instance_key, None);
    lrp.start(&cell(1), net(), t(11)).expect("start");
    assert_eq!(
        lrp.crash(&cell(1), "exited", t(12)),
        Ok(CrashOutcome::RestartNow)
    );
    lrp.start(&cell(1), net(), t(13)).expect("start");
    assert_eq!(
        lrp.crash(&cell(1), "oom", t(14)),
        Ok(CrashOutcome::RestartAt(t(44)))
    );
    assert_eq!(lrp.state, ActualLrpState::Crashed);
    assert_eq!(lrp.since, t(14));
    assert!(!lrp.may_restart(t(43)));
    assert!(lrp.may_restart(t(44)));
    assert_eq!(lrp.restart(t(44)), Ok(Outcome::Changed));
    assert_eq!((lrp.state, lrp.crash_count), (ActualLrpState::Unclaimed, 3));
}

#[test]
fn crash_count_resets_after_five_minutes_running() {
    let mut lrp = running();
    lrp.crash_count = 7;
    let long_after = lrp.since + Duration::from_secs(301);
    assert_eq!(
        lrp.crash(&cell(1), "exited", long_after),
        Ok(CrashOutcome::RestartNow)
    );
    assert_eq!(lrp.crash_count, 1);
}

#[test]
fn no_restart_after_two_hundred_crashes() {
    let mut lrp = running();
    lrp.crash_count = 200;
    assert_eq!(
        lrp.crash(&cell(1), "exited", t(3)),
        Ok(CrashOutcome::NoRestart)
    );
    assert!(!lrp.may_restart(t(1_000_000)));
}

#[test]
fn illegal_transitions_are_typed_errors() {
    let mut lrp = unclaimed();
    let err = lrp
        .crash(&cell(1), "x", t(1))
        .expect_err("unclaimed cannot crash");
    assert_eq!(
        err.to_string(),
        "actual LRP pg/0: cannot go from UNCLAIMED to CRASHED"
    );
    assert!(matches!(
        lrp.restart(t(1)),
        Err(ActualLrpError::IllegalTransition { .. })
    ));
    assert_eq!(lrp.unclaim(t(1)), Ok(Outcome::Unchanged));

    let mut crashed = running();
    crashed.crash_count = 5;
    crashed.crash(&cell(1), "x", t(3)).expect("crash");
    assert!(crashed.claim(&cell(1), t(4)).is_err());
    assert!(crashed.start(&cell(1), net(), t(4)).is_err());
    assert!(
        crashed.unclaim(t(4)).is_err(),
        "CRASHED leaves only by restart"
    );
    assert!(crashed.fail_placement("x", t(4)).is_err());

    let mut r = running();
    assert!(r.fail_placement("x", t(4)).is_err());
    assert!(r.restart(t(4)).is_err());
}

#[test]
fn unclaim_gives_the_slot_back() {
    let mut lrp = running();
    assert_eq!(lrp.unclaim(t(9)), Ok(Outcome::Changed));
    assert_eq!(lrp.state, ActualLrpState::Unclaimed);
    assert_eq!(
        (lrp.instance_key.clone(), lrp.net_info.clone()),
        (None, None)
    );
    assert_eq!(lrp.since, t(9));
}

#[test]
fn placement_failure_keeps_unclaimed_and_resets_since() {
    let mut lrp = unclaimed();
    assert_eq!(
        lrp.fail_placement("insufficient resources: memory", t(30)),
        Ok(Outcome::Changed)
    );
    assert_eq!(lrp.state, ActualLrpState::Unclaimed);
    assert_eq!(lrp.since, t(30));
    assert_eq!(lrp.placement_error, "insufficient resources: memory");
}

#[test]
fn evacuation_and_suspicion_leave_a_replacement() {
    let mut lrp = running();
    let replacement = lrp.evacuate(&cell(1), t(20)).expect("evacuate");
    assert_eq!(lrp.presence, Presence::Evacuating);
    assert_eq!(lrp.state, ActualLrpState::Running);
    assert_eq!(replacement.key, lrp.key);
    assert_eq!(
        (replacement.state, replacement.presence),
        (ActualLrpState::Unclaimed, Presence::Ordinary)
    );
    assert!(matches!(
        lrp.claim(&cell(1), t(21)),
        Err(ActualLrpError::Presence { .. })
    ));
    assert!(lrp.suspect(t(21)).is_err());

    let mut lrp = running();
    assert!(
        lrp.evacuate(&cell(2), t(20)).is_err(),
        "only its own cell evacuates it"
    );
    let replacement = lrp.suspect(t(20)).expect("suspect");
    assert_eq!(lrp.presence, Presence::Suspect);
    assert_eq!(replacement.state, ActualLrpState::Unclaimed);
    assert_eq!(lrp.unsuspect(), Ok(Outcome::Changed));
    assert_eq!(lrp.presence, Presence::Ordinary);
    assert!(lrp.unsuspect().is_err());

    let mut claimed = unclaimed();
    claimed.claim(&cell(1), t(1)).expect("claim");
    assert!(
        claimed.suspect(t(2)).is_err(),
        "a claimed instance is unclaimed instead"
    );
    assert!(claimed.evacuate(&cell(1), t(2)).is_err());
}

#[test]
fn json_uses_diegos_state_names() {
    let lrp = running();
    let v = serde_json::to_value(&lrp).expect("json");
    assert_eq!(v["state"], "RUNNING");
    assert_eq!(v["presence"], "ORDINARY");
    assert_eq!(v["instance_key"]["cell_id"], "cell-1");
    let back: ActualLrp = serde_json::from_value(v).expect("parse");
    assert_eq!(back, lrp);
}

#[test]
fn visible_record_prefers_what_serves_traffic() {
    let mut evacuating = running();
    let mut replacement = evacuating.evacuate(&cell(1), t(5)).expect("evacuate");
    let both = [replacement.clone(), evacuating.clone()];
    assert_eq!(visible_record(&both), Some(&evacuating));
    replacement.start(&cell(2), net(), t(6)).expect("start");
    let both = [evacuating.clone(), replacement.clone()];
    assert_eq!(visible_record(&both), Some(&replacement));
    evacuating.state = ActualLrpState::Crashed;
    let mut unclaimed_again = unclaimed();
    unclaimed_again.since = t(7);
    let both = [evacuating, unclaimed_again.clone()];
    assert_eq!(visible_record(&both), Some(&unclaimed_again));
    assert_eq!(visible_record(&[]), None);
}
