//! The state machines of builds, packages and app tasks: one enum each, one
//! `can_transition_to`, and every change in the database goes through it.
//!
//! ```text
//! build:    STAGING ──► STAGED
//!              └──────► FAILED
//! package:  AWAITING_UPLOAD ──► PROCESSING_UPLOAD ──► READY
//!                   FAILED ──►        └─────────────► FAILED
//! task:     PENDING ──► RUNNING ──► SUCCEEDED | FAILED
//!              │           └──► CANCELING ──► FAILED
//!              └──► CANCELING | SUCCEEDED | FAILED
//! ```

/// States of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildState {
    /// The staging task is queued or running.
    Staging,
    /// A droplet exists.
    Staged,
    /// Staging failed or timed out.
    Failed,
}

/// States of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageState {
    /// Created, no bits yet.
    AwaitingUpload,
    /// Bits being assembled.
    ProcessingUpload,
    /// Ready to stage.
    Ready,
    /// The upload failed; another upload may follow.
    Failed,
}

/// States of an app task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a cell.
    Pending,
    /// Running on a cell.
    Running,
    /// Cancel requested.
    Canceling,
    /// Exited 0.
    Succeeded,
    /// Failed or cancelled.
    Failed,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The API's name of the state.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            /// Parses the API's name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

names!(BuildState { Staging => "STAGING", Staged => "STAGED", Failed => "FAILED" });
names!(PackageState {
    AwaitingUpload => "AWAITING_UPLOAD",
    ProcessingUpload => "PROCESSING_UPLOAD",
    Ready => "READY",
    Failed => "FAILED",
});
names!(TaskState {
    Pending => "PENDING",
    Running => "RUNNING",
    Canceling => "CANCELING",
    Succeeded => "SUCCEEDED",
    Failed => "FAILED",
});

impl BuildState {
    /// Whether `self → to` is allowed.
    pub fn can_transition_to(self, to: Self) -> bool {
        matches!((self, to), (Self::Staging, Self::Staged | Self::Failed))
    }
}

impl PackageState {
    /// Whether `self → to` is allowed.
    pub fn can_transition_to(self, to: Self) -> bool {
        use PackageState::*;
        matches!(
            (self, to),
            (AwaitingUpload | Failed, ProcessingUpload) | (ProcessingUpload, Ready | Failed)
        )
    }
}

impl TaskState {
    /// Whether `self → to` is allowed.
    pub fn can_transition_to(self, to: Self) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Pending, Running | Canceling | Succeeded | Failed)
                | (Running, Canceling | Succeeded | Failed)
                | (Canceling, Failed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_only_leave_staging() {
        use BuildState::*;
        let all = [Staging, Staged, Failed];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_transition_to(to),
                    from == Staging && to != Staging,
                    "{from:?} → {to:?}"
                );
            }
            assert_eq!(BuildState::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn packages_are_uploaded_once_unless_failed() {
        use PackageState::*;
        assert!(AwaitingUpload.can_transition_to(ProcessingUpload));
        assert!(Failed.can_transition_to(ProcessingUpload));
        assert!(!Ready.can_transition_to(ProcessingUpload));
        assert!(!ProcessingUpload.can_transition_to(ProcessingUpload));
        assert!(ProcessingUpload.can_transition_to(Ready));
        assert!(!AwaitingUpload.can_transition_to(Ready));
        assert_eq!(PackageState::parse("READY"), Some(Ready));
        assert_eq!(PackageState::parse("nope"), None);
    }

    #[test]
    fn tasks_end_once() {
        use TaskState::*;
        for end in [Succeeded, Failed] {
            for to in [Pending, Running, Canceling, Succeeded, Failed] {
                assert!(!end.can_transition_to(to), "{end:?} is final");
            }
        }
        assert!(Canceling.can_transition_to(Failed));
        assert!(!Canceling.can_transition_to(Running));
        assert!(Pending.can_transition_to(Canceling));
    }
}
