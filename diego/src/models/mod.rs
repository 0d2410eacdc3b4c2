//! Records and recipes, serialisable as they travel between controller and
//! cells and into the controller's database.

pub mod action;
pub mod check;

pub use action::Action;
pub use check::{Check, CheckDefinition};
