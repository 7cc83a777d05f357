//! The incident domain. `model` is pure: no I/O, no clock, no Slack, no SQL.

pub mod change;
pub mod model;
