//! The incident domain. Pure: no I/O, no clock, no Slack, no SQL.
//!
//! - [`model`]: incidents, severities, statuses, titles, channel names, timeline events.
//! - [`change`]: the lifecycle as a state machine (`Incident::apply`, `apply_under`).
//! - [`followup`]: follow-up actions: validation, who may close them, overdue reminders.
//! - [`pir`]: post-incident reviews: which incidents need one, reminders, the Markdown draft.

pub mod change;
pub mod followup;
pub mod model;
pub mod pir;
