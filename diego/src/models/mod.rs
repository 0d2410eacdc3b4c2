//! Records and recipes, serialisable as they travel between controller and
//! cells and into the controller's database.

pub mod action;
pub mod actual_lrp;
pub mod check;
pub mod desired_lrp;
pub mod record;
pub mod resource;
pub mod security_group;
pub mod task;

pub use action::Action;
pub use actual_lrp::{
    visible_record, ActualLrp, ActualLrpError, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState,
    CrashOutcome, NetInfo, PortMapping, Presence,
};
pub use check::{Check, CheckDefinition, HealthCheckKind};
pub use desired_lrp::{DesiredLrp, DesiredLrpError, DesiredLrpUpdate, Route};
pub use record::{ModificationTag, Outcome, Timestamp};
pub use resource::{PlacementConstraint, Resource};
pub use security_group::{
    AddressRange, IcmpInfo, PortRange, SecurityGroupError, SecurityGroupRule, SecurityProtocol,
};
pub use task::{Task, TaskCallback, TaskDefinition, TaskError, TaskState};
