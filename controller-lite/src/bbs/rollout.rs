//! Desired-side changes inside one transaction: instance counts per
//! generation, and the rolling restart between an app process's versions.
//!
//! A new version is a new generation (a new diego desired LRP). While an
//! older one still runs instances, the new one grows one instance at a
//! time: it may have one more instance than it has RUNNING, and the older
//! generations together keep `target − running_new` instances. An old
//! instance therefore stops only once a new one is RUNNING, and at least
//! N − 1 (in fact N, when all were running) instances keep serving.
//!
//! The rule holds both ways: when a new instance stops running (it
//! crashed after becoming healthy), the old generations grow back, up to
//! their own target, so a new version that keeps crashing never wears the
//! old one down. The rollout then waits (the new generation keeps one
//! instance more than it runs, restarted by the crash back-off) until the
//! new version runs or is replaced.

use diego::models::{ActualLrp, ActualLrpKey, ActualLrpState, Presence, Timestamp};
use rusqlite::Connection;

use super::records::{self, Generation};
use super::{BbsError, Effects, Stop};

fn stop_of(a: &ActualLrp) -> Option<Stop> {
    a.instance_key.as_ref().map(|i| Stop {
        cell_id: i.cell_id.clone(),
        key: a.key.clone(),
        instance_guid: i.instance_guid.clone(),
    })
}

/// Deletes a record, asking its cell to stop it.
pub(crate) fn retire(conn: &Connection, a: &ActualLrp, fx: &mut Effects) -> Result<(), BbsError> {
    records::delete_actual(conn, &a.key, a.presence)?;
    fx.stops.extend(stop_of(a));
    Ok(())
}

/// Sets a generation's running instance count: creates UNCLAIMED records
/// for missing indices (to be auctioned) and retires those at or above it.
pub(crate) fn set_instances(
    conn: &Connection,
    g: &mut Generation,
    instances: u32,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<(), BbsError> {
    g.desired.instances = instances;
    records::put_generation(conn, g, now)?;
    let existing = records::actuals_of(conn, &g.desired.process_guid)?;
    for a in existing.iter().filter(|a| a.key.index >= instances) {
        retire(conn, a, fx)?;
    }
    for index in 0..instances {
        let has_ordinary = existing
            .iter()
            .any(|a| a.key.index == index && a.presence == Presence::Ordinary);
        if !has_ordinary {
            let key = ActualLrpKey::new(&g.desired.process_guid, index, &g.desired.domain);
            records::put_actual(conn, &ActualLrp::new_unclaimed(key.clone(), now))?;
            fx.lrp_starts.push(key);
        }
    }
    Ok(())
}

/// Removes a generation and retires all its records.
pub(crate) fn remove_generation(
    conn: &Connection,
    process_guid: &str,
    fx: &mut Effects,
) -> Result<(), BbsError> {
    for a in records::actuals_of(conn, process_guid)? {
        retire(conn, &a, fx)?;
    }
    records::delete_desired(conn, process_guid)?;
    Ok(())
}

fn running(conn: &Connection, process_guid: &str, below: u32) -> Result<u32, BbsError> {
    let n = records::actuals_of(conn, process_guid)?
        .iter()
        .filter(|a| {
            a.presence == Presence::Ordinary
                && a.state == ActualLrpState::Running
                && a.key.index < below
        })
        .count();
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Brings an app process's generations to where the rollout allows.
pub(crate) fn advance(
    conn: &Connection,
    app_process_guid: &str,
    now: Timestamp,
) -> Result<Effects, BbsError> {
    let mut fx = Effects::default();
    let mut gens = records::generations(conn, app_process_guid)?;
    let Some(active_at) = gens.iter().position(|g| !g.retiring) else {
        // Only retiring generations: nothing replaces them, keep them.
        return Ok(fx);
    };
    let mut active = gens.remove(active_at);
    let target = active.target_instances;
    let running_new = running(conn, &active.desired.process_guid, target)?;
    let old_running: u32 = gens
        .iter()
        .map(|g| running(conn, &g.desired.process_guid, g.desired.instances))
        .sum::<Result<u32, _>>()?;
    if old_running == 0 {
        // Nothing old serves: no reason to wait for the new version.
        for g in &gens {
            remove_generation(conn, &g.desired.process_guid, &mut fx)?;
        }
        gens.clear();
    }
    let want_new = if gens.is_empty() {
        target
    } else {
        target.min(running_new.saturating_add(1))
    };
    set_instances(conn, &mut active, want_new, now, &mut fx)?;
    let mut allowed_old = target.saturating_sub(running_new);
    for mut g in gens {
        // Its own target, not what it runs now: an instance retired for a
        // new one that crashed since comes back.
        let keep = g.target_instances.min(allowed_old);
        allowed_old -= keep;
        if keep == 0 {
            remove_generation(conn, &g.desired.process_guid, &mut fx)?;
        } else if keep != g.desired.instances {
            set_instances(conn, &mut g, keep, now, &mut fx)?;
        }
    }
    Ok(fx)
}
