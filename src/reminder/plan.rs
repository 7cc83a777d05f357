//! The SLA clock, pure: when the next stakeholder update is due, and what the scheduler does
//! when the clock fires. Takes `now`; never reads the clock or touches I/O.
//!
//! Stages of one due time: at `due_at` the SPOC is reminded (`Due`); if still no update after
//! the escalation delay, a breach is recorded and escalated (`Escalate`); after that the SPOC is
//! reminded again every cadence (`Repeat`) until an update re-plans the clock.

use crate::incident::model::{Incident, Severity};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How long one snooze postpones the next reminder.
pub const SNOOZE: Duration = Duration::minutes(15);

/// Service levels of one severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sla {
    /// Zero: no reminders.
    pub update_every: Duration,
    /// Zero: never escalate.
    pub escalate_after: Duration,
    /// The customer-update cadence (`[status_page].cadence`, issue 14); zero: none.
    pub customer_every: Duration,
}

/// Service levels of every severity, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slas(pub [Sla; 4]);

impl Slas {
    pub fn of(&self, severity: Severity) -> Sla {
        self.0[severity as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Due,
    Escalate,
    Repeat,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Due => "due",
            Stage::Escalate => "escalate",
            Stage::Repeat => "repeat",
        }
    }
    pub fn parse(s: &str) -> Stage {
        match s {
            "escalate" => Stage::Escalate,
            "repeat" => Stage::Repeat,
            _ => Stage::Due,
        }
    }
}

/// An incident's SLA clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// When the next stakeholder update is due.
    pub due_at: DateTime<Utc>,
    /// When the scheduler acts next.
    pub next_at: DateTime<Utc>,
    pub stage: Stage,
    /// Snoozed once already for this due time.
    pub snoozed: bool,
}

/// What the scheduler does when a clock fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Remind the SPOC (`late` when the bot fires it well after its time, e.g. after downtime).
    Remind {
        stage: Stage,
        due_at: DateTime<Utc>,
        late: bool,
    },
    /// Record a breach and escalate to stakeholders and managers.
    Escalate {
        due_at: DateTime<Utc>,
        overdue: Duration,
        late: bool,
    },
}

/// The clock after a change: due `update_every` after the last update (or the declaration)
/// while the incident is open; none when it is not, or when its severity has no cadence.
pub fn plan(incident: &Incident, sla: Sla) -> Option<Clock> {
    if !incident.status.is_open() || sla.update_every <= Duration::zero() {
        return None;
    }
    let due_at = incident.last_update_at.unwrap_or(incident.declared_at) + sla.update_every;
    Some(Clock {
        due_at,
        next_at: due_at,
        stage: Stage::Due,
        snoozed: false,
    })
}

/// Whether re-planning is needed after a change from `before` to `after`.
pub fn needs_replan(before: &Incident, after: &Incident) -> bool {
    before.severity != after.severity || before.status != after.status || before.last_update_at != after.last_update_at
}

/// Fires `clock` at `now` (callers fire only when `now >= clock.next_at`). A reminder fired more
/// than `late_after` past its time is marked late. Returns the action and the next clock.
pub fn fire(clock: Clock, sla: Sla, now: DateTime<Utc>, late_after: Duration) -> (Action, Clock) {
    let late = now - clock.next_at > late_after;
    // After downtime, do not replay every missed repeat: the next one is a cadence from now.
    let next_repeat = |from: DateTime<Utc>| {
        let at = from + sla.update_every;
        if at <= now {
            now + sla.update_every
        } else {
            at
        }
    };
    match clock.stage {
        Stage::Due => {
            let action = Action::Remind {
                stage: Stage::Due,
                due_at: clock.due_at,
                late,
            };
            let next = if sla.escalate_after > Duration::zero() {
                Clock {
                    next_at: clock.due_at + sla.escalate_after,
                    stage: Stage::Escalate,
                    ..clock
                }
            } else {
                Clock {
                    next_at: next_repeat(clock.next_at),
                    stage: Stage::Repeat,
                    ..clock
                }
            };
            (action, next)
        }
        Stage::Escalate => (
            Action::Escalate {
                due_at: clock.due_at,
                overdue: now - clock.due_at,
                late,
            },
            Clock {
                next_at: next_repeat(clock.due_at),
                stage: Stage::Repeat,
                ..clock
            },
        ),
        Stage::Repeat => (
            Action::Remind {
                stage: Stage::Repeat,
                due_at: clock.due_at,
                late,
            },
            Clock {
                next_at: next_repeat(clock.next_at),
                ..clock
            },
        ),
    }
}

/// Postpones the next reminder by [`SNOOZE`], once per due time.
pub fn snooze(clock: Option<Clock>, now: DateTime<Utc>) -> Result<Clock, String> {
    let clock = clock.ok_or("No update reminder is running for this incident.")?;
    if clock.snoozed {
        return Err("Already snoozed once for this update; please post the update.".into());
    }
    Ok(Clock {
        next_at: clock.next_at.max(now) + SNOOZE,
        snoozed: true,
        ..clock
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::model::Status;

    fn sla(every: i64, escalate: i64) -> Sla {
        Sla {
            update_every: Duration::minutes(every),
            escalate_after: Duration::minutes(escalate),
            customer_every: Duration::zero(),
        }
    }
    fn at(min: i64) -> DateTime<Utc> {
        Incident::example().declared_at + Duration::minutes(min)
    }
    const LATE: Duration = Duration::seconds(60);

    #[test]
    fn due_a_cadence_after_the_last_update_or_declaration() {
        let mut inc = Incident::example();
        assert_eq!(plan(&inc, sla(30, 10)).unwrap().due_at, at(30));
        inc.last_update_at = Some(at(20));
        let clock = plan(&inc, sla(30, 10)).unwrap();
        assert_eq!((clock.due_at, clock.next_at, clock.stage), (at(50), at(50), Stage::Due));
        assert_eq!(plan(&inc, sla(0, 10)), None, "no cadence, no clock");
        for status in [Status::Resolved, Status::Closed, Status::Canceled] {
            inc.status = status;
            assert_eq!(plan(&inc, sla(30, 10)), None, "{status}");
        }
    }

    #[test]
    fn remind_then_escalate_then_repeat_every_cadence() {
        let s = sla(30, 10);
        let c0 = plan(&Incident::example(), s).unwrap();
        let (a1, c1) = fire(c0, s, at(30), LATE);
        assert_eq!(
            a1,
            Action::Remind {
                stage: Stage::Due,
                due_at: at(30),
                late: false
            }
        );
        assert_eq!((c1.stage, c1.next_at), (Stage::Escalate, at(40)));
        let (a2, c2) = fire(c1, s, at(40), LATE);
        assert_eq!(
            a2,
            Action::Escalate {
                due_at: at(30),
                overdue: Duration::minutes(10),
                late: false
            }
        );
        assert_eq!((c2.stage, c2.next_at), (Stage::Repeat, at(60)));
        let (a3, c3) = fire(c2, s, at(60), LATE);
        assert_eq!(
            a3,
            Action::Remind {
                stage: Stage::Repeat,
                due_at: at(30),
                late: false
            }
        );
        assert_eq!(c3.next_at, at(90));
    }

    #[test]
    fn no_escalation_delay_means_repeat_without_breach() {
        let s = sla(60, 0);
        let c0 = plan(&Incident::example(), s).unwrap();
        let (_, c1) = fire(c0, s, at(60), LATE);
        assert_eq!((c1.stage, c1.next_at), (Stage::Repeat, at(120)));
    }

    #[test]
    fn exactly_at_due_and_one_ms_before() {
        let c = plan(&Incident::example(), sla(30, 10)).unwrap();
        let one_ms_before = at(30) - Duration::milliseconds(1);
        assert!(one_ms_before < c.next_at, "the scheduler does not fire yet");
        assert!(at(30) >= c.next_at, "fires exactly at due");
    }

    #[test]
    fn late_after_downtime_and_no_burst_of_repeats() {
        let s = sla(30, 10);
        let c0 = plan(&Incident::example(), s).unwrap();
        let (a, c1) = fire(c0, s, at(200), LATE);
        assert!(matches!(a, Action::Remind { late: true, .. }));
        let (_, c2) = fire(c1, s, at(200), LATE);
        assert_eq!(c2.next_at, at(230), "next repeat a cadence from now, not from the past");
    }

    #[test]
    fn severity_change_while_overdue_replans_from_the_last_update() {
        let mut inc = Incident::example();
        inc.last_update_at = Some(at(0));
        let before = inc.clone();
        inc.severity = Severity::Sev1;
        assert!(needs_replan(&before, &inc));
        let clock = plan(&inc, sla(30, 10)).unwrap();
        assert_eq!(clock.next_at, at(30), "already past at minute 45: fires at once");
        let mut noted = before.clone();
        noted.description = "changed".into();
        assert!(!needs_replan(&before, &noted));
    }

    #[test]
    fn snooze_once_per_due_time() {
        let c = plan(&Incident::example(), sla(30, 10)).unwrap();
        let s1 = snooze(Some(c), at(31)).unwrap();
        assert_eq!((s1.next_at, s1.snoozed), (at(46), true));
        assert!(snooze(Some(s1), at(32)).unwrap_err().contains("Already snoozed"));
        assert!(snooze(None, at(32)).is_err());
        let before = snooze(Some(c), at(10)).unwrap();
        assert_eq!(before.next_at, at(45), "snoozing early postpones from the due time");
    }
}
