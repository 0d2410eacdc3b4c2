//! A container's lifecycle (Diego executor's container states).
//!
//! ```text
//!  reserve ──► Reserved ──run──► Initializing ──garden create──► Created
//!                 │                   │                            │
//!                 │                   │          healthy / task started
//!                 │                   │                            ▼
//!                 └──── stop ─────────┴──── failure or stop ──►  Running
//!                                     ▼                            │
//!                                 Completed ◄──────── exit ────────┘
//! ```
//!
//! Every state can go to `Completed` (a failure or a stop); otherwise a
//! container only moves forward one step. `Completed` is final: only
//! `delete` removes it.

use serde::{Deserialize, Serialize};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Resources are set aside; nothing exists in garden yet.
    Reserved,
    /// `run` was called; the garden container is being created.
    Initializing,
    /// The garden container exists; setup and the action are starting.
    Created,
    /// The action runs (an LRP: and its health checks passed).
    Running,
    /// Finished, failed or stopped; the result is known.
    Completed,
}

impl ContainerState {
    /// Whether a container in this state may move to `next`.
    pub fn can_transition_to(self, next: ContainerState) -> bool {
        use ContainerState::*;
        matches!(
            (self, next),
            (Reserved, Initializing)
                | (Initializing, Created)
                | (Created, Running)
                | (Reserved | Initializing | Created | Running, Completed)
        )
    }

    /// The state's name as the rep and the diagnostics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Initializing => "initializing",
            Self::Created => "created",
            Self::Running => "running",
            Self::Completed => "completed",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ContainerState::{self, *};

    const ALL: [ContainerState; 5] = [Reserved, Initializing, Created, Running, Completed];

    #[test]
    fn every_transition_is_checked() {
        let allowed = [
            (Reserved, Initializing),
            (Initializing, Created),
            (Created, Running),
            (Reserved, Completed),
            (Initializing, Completed),
            (Created, Completed),
            (Running, Completed),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn names_are_diegos() {
        let names: Vec<_> = ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "reserved",
                "initializing",
                "created",
                "running",
                "completed"
            ]
        );
        assert_eq!(
            serde_json::to_string(&Running).expect("json"),
            "\"running\""
        );
    }
}
