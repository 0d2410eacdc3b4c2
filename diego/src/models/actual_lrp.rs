//! The actual LRP: one instance slot `(process_guid, index)` and what is
//! known of it, with Diego's checked state transitions.
//!
//! ```text
//! UNCLAIMED ──claim──► CLAIMED ──start──► RUNNING
//! UNCLAIMED ──start─────────────────────► RUNNING
//! CLAIMED | RUNNING ──crash──► CRASHED   (crashes 1 and 2: UNCLAIMED at once)
//! CLAIMED | RUNNING ──unclaim──► UNCLAIMED
//! RUNNING ──claim (same instance)──► CLAIMED
//! CRASHED ──restart (back-off allows)──► UNCLAIMED
//! ```
//!
//! Presence is separate: an ORDINARY RUNNING instance becomes EVACUATING
//! when its cell drains, or SUSPECT when its cell vanishes; either way a new
//! ORDINARY UNCLAIMED record with the same key replaces it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::record::{ModificationTag, Outcome, Timestamp};
use crate::backoff;

/// A transition the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActualLrpError {
    /// Not an edge of the state graph.
    #[error("actual LRP {key}: cannot go from {from} to {to}")]
    IllegalTransition {
        /// The instance slot.
        key: ActualLrpKey,
        /// Current state.
        from: ActualLrpState,
        /// Refused state.
        to: ActualLrpState,
    },
    /// Another instance (or none) holds the slot.
    #[error("actual LRP {key}: held by {held}, not by {caller}")]
    InstanceMismatch {
        /// The instance slot.
        key: ActualLrpKey,
        /// Who holds it (`instance on cell`, or `nobody`).
        held: String,
        /// Who asked (`instance on cell`).
        caller: String,
    },
    /// The operation needs a different presence.
    #[error("actual LRP {key}: {operation} needs presence {needed}, it is {presence}")]
    Presence {
        /// The instance slot.
        key: ActualLrpKey,
        /// What was attempted.
        operation: &'static str,
        /// Its presence.
        presence: Presence,
        /// The presence required.
        needed: Presence,
    },
}

/// The slot of one instance: a process and an index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActualLrpKey {
    /// The desired LRP.
    pub process_guid: String,
    /// 0 ..< instances.
    pub index: u32,
    /// The desired LRP's domain.
    pub domain: String,
}

impl ActualLrpKey {
    /// A key.
    pub fn new(process_guid: impl Into<String>, index: u32, domain: impl Into<String>) -> Self {
        Self {
            process_guid: process_guid.into(),
            index,
            domain: domain.into(),
        }
    }
}

impl fmt::Display for ActualLrpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.process_guid, self.index)
    }
}

/// Which container fills a slot: its guid and its cell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActualLrpInstanceKey {
    /// The container's guid (chosen by the cell).
    pub instance_guid: String,
    /// The cell running it.
    pub cell_id: String,
}

impl ActualLrpInstanceKey {
    /// An instance key.
    pub fn new(instance_guid: impl Into<String>, cell_id: impl Into<String>) -> Self {
        Self {
            instance_guid: instance_guid.into(),
            cell_id: cell_id.into(),
        }
    }
}

impl fmt::Display for ActualLrpInstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.instance_guid, self.cell_id)
    }
}

/// One container port reachable from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the cell's address.
    pub host_port: u16,
}

/// Where a running instance is reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetInfo {
    /// The cell's address.
    pub address: String,
    /// The container's own address.
    pub instance_address: String,
    /// Container ports mapped to host ports.
    pub ports: Vec<PortMapping>,
}

/// States of an instance slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActualLrpState {
    /// Waiting for a cell (auction pending or failed).
    Unclaimed,
    /// A cell took it and is starting the container.
    Claimed,
    /// Running (and healthy).
    Running,
    /// Crashed; waits for the back-off (or forever).
    Crashed,
}

impl ActualLrpState {
    /// The edges of REFERENCE §2's graph (self-edges are the idempotent
    /// repeats the transitions allow for the same instance).
    pub fn can_transition_to(self, to: ActualLrpState) -> bool {
        use ActualLrpState::*;
        matches!(
            (self, to),
            (Unclaimed, Claimed | Running)
                | (Claimed, Claimed | Running | Crashed | Unclaimed)
                | (Running, Running | Crashed | Unclaimed | Claimed)
                | (Crashed, Unclaimed)
        )
    }
}

impl fmt::Display for ActualLrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActualLrpState::Unclaimed => "UNCLAIMED",
            ActualLrpState::Claimed => "CLAIMED",
            ActualLrpState::Running => "RUNNING",
            ActualLrpState::Crashed => "CRASHED",
        })
    }
}

/// Whether a record is the slot's own, or a stand-in kept while it is
/// replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Presence {
    /// The normal record.
    #[default]
    Ordinary,
    /// Still running on a draining cell until its replacement runs.
    Evacuating,
    /// On a cell that stopped reporting; kept (and routed) until its
    /// replacement runs or the cell returns.
    Suspect,
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Presence::Ordinary => "ORDINARY",
            Presence::Evacuating => "EVACUATING",
            Presence::Suspect => "SUSPECT",
        })
    }
}

/// What happens after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashOutcome {
    /// Back to UNCLAIMED: auction it now.
    RestartNow,
    /// CRASHED until then (convergence restarts it).
    RestartAt(Timestamp),
    /// CRASHED for good (more than 200 crashes).
    NoRestart,
}

/// One instance slot's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualLrp {
    /// The slot.
    pub key: ActualLrpKey,
    /// The container filling it (CLAIMED and RUNNING only).
    #[serde(default)]
    pub instance_key: Option<ActualLrpInstanceKey>,
    /// State.
    pub state: ActualLrpState,
    /// Presence.
    #[serde(default)]
    pub presence: Presence,
    /// Where it is reachable (RUNNING only).
    #[serde(default)]
    pub net_info: Option<NetInfo>,
    /// Crashes counted by the back-off.
    #[serde(default)]
    pub crash_count: u32,
    /// Why it last crashed.
    #[serde(default)]
    pub crash_reason: String,
    /// When it entered its state.
    pub since: Timestamp,
    /// Why the last auction found no cell.
    #[serde(default)]
    pub placement_error: String,
    /// Version of this record.
    #[serde(default)]
    pub modification_tag: ModificationTag,
}

impl ActualLrp {
    /// A new UNCLAIMED ORDINARY record.
    pub fn new_unclaimed(key: ActualLrpKey, now: Timestamp) -> Self {
        Self {
            key,
            instance_key: None,
            state: ActualLrpState::Unclaimed,
            presence: Presence::Ordinary,
            net_info: None,
            crash_count: 0,
            crash_reason: String::new(),
            since: now,
            placement_error: String::new(),
            modification_tag: ModificationTag::default(),
        }
    }

    /// The cell of the instance, when claimed or running.
    pub fn cell_id(&self) -> Option<&str> {
        self.instance_key.as_ref().map(|k| k.cell_id.as_str())
    }

    /// Whether routers should send it traffic.
    pub fn is_routable(&self) -> bool {
        self.state == ActualLrpState::Running && self.net_info.is_some()
    }

    fn illegal(&self, to: ActualLrpState) -> ActualLrpError {
        ActualLrpError::IllegalTransition {
            key: self.key.clone(),
            from: self.state,
            to,
        }
    }

    fn check_edge(&self, to: ActualLrpState) -> Result<(), ActualLrpError> {
        if self.state.can_transition_to(to) {
            Ok(())
        } else {
            Err(self.illegal(to))
        }
    }

    fn check_presence(
        &self,
        operation: &'static str,
        needed: Presence,
    ) -> Result<(), ActualLrpError> {
        if self.presence == needed {
            Ok(())
        } else {
            Err(ActualLrpError::Presence {
                key: self.key.clone(),
                operation,
                presence: self.presence,
                needed,
            })
        }
    }

    fn check_holder(&self, caller: &ActualLrpInstanceKey) -> Result<(), ActualLrpError> {
        if self.instance_key.as_ref() == Some(caller) {
            Ok(())
        } else {
            Err(ActualLrpError::InstanceMismatch {
                key: self.key.clone(),
                held: self
                    .instance_key
                    .as_ref()
                    .map_or_else(|| "nobody".to_owned(), ToString::to_string),
                caller: caller.to_string(),
            })
        }
    }

    fn enter(&mut self, state: ActualLrpState, now: Timestamp) {
        self.state = state;
        self.since = now;
        self.modification_tag.increment();
    }

    /// A cell claims the slot for its container: UNCLAIMED → CLAIMED, or
    /// RUNNING → CLAIMED for the same instance (a restart in place).
    pub fn claim(
        &mut self,
        instance: &ActualLrpInstanceKey,
        now: Timestamp,
    ) -> Result<Outcome, ActualLrpError> {
        self.check_presence("claim", Presence::Ordinary)?;
        self.check_edge(ActualLrpState::Claimed)?;
        match self.state {
            ActualLrpState::Unclaimed => {}
            ActualLrpState::Claimed => {
                self.check_holder(instance)?;
                return Ok(Outcome::Unchanged);
            }
            _ => self.check_holder(instance)?,
        }
        self.instance_key = Some(instance.clone());
        self.net_info = None;
        self.placement_error.clear();
        self.enter(ActualLrpState::Claimed, now);
        Ok(Outcome::Changed)
    }

    /// The container runs: UNCLAIMED or CLAIMED (by the same instance) →
    /// RUNNING. A repeat by the running instance updates its net info.
    pub fn start(
        &mut self,
        instance: &ActualLrpInstanceKey,
        net_info: NetInfo,
        now: Timestamp,
    ) -> Result<Outcome, ActualLrpError> {
        self.check_presence("start", Presence::Ordinary)?;
        self.check_edge(ActualLrpState::Running)?;
        match self.state {
            ActualLrpState::Unclaimed => {}
            ActualLrpState::Running => {
                self.check_holder(instance)?;
                if self.net_info.as_ref() == Some(&net_info) {
                    return Ok(Outcome::Unchanged);
                }
                self.net_info = Some(net_info);
                self.modification_tag.increment();
                return Ok(Outcome::Changed);
            }
            _ => self.check_holder(instance)?,
        }
        self.instance_key = Some(instance.clone());
        self.net_info = Some(net_info);
        self.placement_error.clear();
        self.enter(ActualLrpState::Running, now);
        Ok(Outcome::Changed)
    }

    /// The instance crashed: CLAIMED or RUNNING → CRASHED, counted by the
    /// back-off; crashes 1 and 2 go straight on to UNCLAIMED.
    pub fn crash(
        &mut self,
        instance: &ActualLrpInstanceKey,
        reason: &str,
        now: Timestamp,
    ) -> Result<CrashOutcome, ActualLrpError> {
        self.check_presence("crash", Presence::Ordinary)?;
        self.check_edge(ActualLrpState::Crashed)?;
        self.check_holder(instance)?;
        let running_since = (self.state == ActualLrpState::Running).then_some(self.since);
        self.crash_count = backoff::next_crash_count(self.crash_count, running_since, now);
        self.crash_reason = reason.to_owned();
        self.instance_key = None;
        self.net_info = None;
        if backoff::restarts_immediately(self.crash_count) {
            self.enter(ActualLrpState::Unclaimed, now);
            return Ok(CrashOutcome::RestartNow);
        }
        self.enter(ActualLrpState::Crashed, now);
        Ok(match backoff::restart_at(now, self.crash_count) {
            Some(at) => CrashOutcome::RestartAt(at),
            None => CrashOutcome::NoRestart,
        })
    }

    /// Gives the slot back: CLAIMED or RUNNING → UNCLAIMED (its cell was
    /// lost or is evacuating a claimed container). Idempotent.
    pub fn unclaim(&mut self, now: Timestamp) -> Result<Outcome, ActualLrpError> {
        if self.state == ActualLrpState::Unclaimed {
            return Ok(Outcome::Unchanged);
        }
        self.check_edge(ActualLrpState::Unclaimed)?;
        if self.state == ActualLrpState::Crashed {
            return Err(self.illegal(ActualLrpState::Unclaimed));
        }
        self.instance_key = None;
        self.net_info = None;
        self.enter(ActualLrpState::Unclaimed, now);
        Ok(Outcome::Changed)
    }

    /// The back-off allows a restart: CRASHED → UNCLAIMED (the crash count
    /// stays).
    pub fn restart(&mut self, now: Timestamp) -> Result<Outcome, ActualLrpError> {
        if self.state != ActualLrpState::Crashed {
            return Err(self.illegal(ActualLrpState::Unclaimed));
        }
        self.enter(ActualLrpState::Unclaimed, now);
        Ok(Outcome::Changed)
    }

    /// Whether a CRASHED record may restart at `now`.
    pub fn may_restart(&self, now: Timestamp) -> bool {
        self.state == ActualLrpState::Crashed
            && backoff::should_restart(now, self.since, self.crash_count)
    }

    /// The auction found no cell: the record stays UNCLAIMED with the
    /// reason; `since` restarts, so convergence retries 30 s later.
    pub fn fail_placement(
        &mut self,
        error: &str,
        now: Timestamp,
    ) -> Result<Outcome, ActualLrpError> {
        if self.state != ActualLrpState::Unclaimed {
            return Err(self.illegal(ActualLrpState::Unclaimed));
        }
        self.placement_error = error.to_owned();
        self.since = now;
        self.modification_tag.increment();
        Ok(Outcome::Changed)
    }

    fn replace_with(&mut self, presence: Presence, now: Timestamp) -> ActualLrp {
        self.presence = presence;
        self.modification_tag.increment();
        ActualLrp::new_unclaimed(self.key.clone(), now)
    }

    /// Its cell drains: this RUNNING instance becomes EVACUATING (kept and
    /// routed) and the returned ORDINARY UNCLAIMED record replaces it. A
    /// CLAIMED instance is [`unclaim`](Self::unclaim)ed instead.
    pub fn evacuate(
        &mut self,
        instance: &ActualLrpInstanceKey,
        now: Timestamp,
    ) -> Result<ActualLrp, ActualLrpError> {
        self.check_presence("evacuate", Presence::Ordinary)?;
        if self.state != ActualLrpState::Running {
            return Err(ActualLrpError::IllegalTransition {
                key: self.key.clone(),
                from: self.state,
                to: ActualLrpState::Unclaimed,
            });
        }
        self.check_holder(instance)?;
        Ok(self.replace_with(Presence::Evacuating, now))
    }

    /// Its cell vanished: this RUNNING instance becomes SUSPECT and the
    /// returned ORDINARY UNCLAIMED record replaces it.
    pub fn suspect(&mut self, now: Timestamp) -> Result<ActualLrp, ActualLrpError> {
        self.check_presence("suspect", Presence::Ordinary)?;
        if self.state != ActualLrpState::Running {
            return Err(ActualLrpError::IllegalTransition {
                key: self.key.clone(),
                from: self.state,
                to: ActualLrpState::Unclaimed,
            });
        }
        Ok(self.replace_with(Presence::Suspect, now))
    }

    /// Its cell came back before the replacement ran: SUSPECT → ORDINARY
    /// (the caller removes the replacement first).
    pub fn unsuspect(&mut self) -> Result<Outcome, ActualLrpError> {
        self.check_presence("unsuspect", Presence::Suspect)?;
        self.presence = Presence::Ordinary;
        self.modification_tag.increment();
        Ok(Outcome::Changed)
    }
}

/// The record to show for one slot (Diego's group resolution): the
/// ORDINARY one when it is RUNNING, else a RUNNING EVACUATING or SUSPECT
/// stand-in, else the ORDINARY one (or whatever there is).
pub fn visible_record<'a>(
    records: impl IntoIterator<Item = &'a ActualLrp>,
) -> Option<&'a ActualLrp> {
    let (mut ordinary, mut stand_in) = (None, None);
    for lrp in records {
        match lrp.presence {
            Presence::Ordinary => ordinary = ordinary.or(Some(lrp)),
            _ if lrp.state == ActualLrpState::Running => stand_in = stand_in.or(Some(lrp)),
            _ => {}
        }
    }
    match ordinary {
        Some(o) if o.state == ActualLrpState::Running => Some(o),
        _ => stand_in.or(ordinary),
    }
}

#[cfg(test)]
#[path = "actual_lrp_tests.rs"]
mod tests;
