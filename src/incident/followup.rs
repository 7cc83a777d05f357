//! Follow-up actions: what must still be done after service is restored, with an owner, a due
//! day and a state. Pure: callers pass `now` and the local `today`.
//!
//! A follow-up is numbered within its incident (`#1`, `#2`, …). It is overdue from 00:00 local
//! time of the day after its due day; from then on its owner is reminded once per configured
//! period until it is done or dropped ("won't do").

use super::model::{IncidentId, IncidentNumber, UserId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest follow-up text: one line in lists, tables and the PIR.
pub const MAX_FOLLOW_UP_CHARS: usize = 500;
/// Most follow-ups added at once (the resolve form takes one per line).
pub const MAX_FOLLOW_UPS_AT_ONCE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUpState {
    Open,
    Done,
    WontDo,
}

impl FollowUpState {
    pub const ALL: [FollowUpState; 3] = [FollowUpState::Open, FollowUpState::Done, FollowUpState::WontDo];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUpState::Open => "open",
            FollowUpState::Done => "done",
            FollowUpState::WontDo => "wont_do",
        }
    }

    pub fn parse(s: &str) -> Option<FollowUpState> {
        FollowUpState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// What people read.
    pub fn label(self) -> &'static str {
        match self {
            FollowUpState::Open => "open",
            FollowUpState::Done => "done",
            FollowUpState::WontDo => "won't do",
        }
    }
}

impl fmt::Display for FollowUpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Which part of a new follow-up a problem is in (forms show it under that field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Text,
    Due,
    Link,
}

/// A problem with a new follow-up: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: Field,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn invalid(field: Field, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// A follow-up as someone asks for it (validated by [`NewFollowUp::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFollowUp {
    pub text: String,
    pub owner: Option<UserId>,
    pub due: Option<NaiveDate>,
    pub link: Option<String>,
}

impl NewFollowUp {
    /// Checks the text (one line, not empty, bounded), the due day (today or later, in the
    /// configured time zone) and the link (http or https).
    pub fn parse(
        text: &str,
        owner: Option<UserId>,
        due: Option<NaiveDate>,
        link: Option<String>,
        today: NaiveDate,
    ) -> Result<NewFollowUp, Invalid> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let chars = text.chars().count();
        if chars == 0 {
            return Err(invalid(
                Field::Text,
                "Say what needs doing, e.g. `/incident followup Add an alert on refund errors @owner due 2026-12-15`.",
            ));
        }
        if chars > MAX_FOLLOW_UP_CHARS {
            return Err(invalid(
                Field::Text,
                format!("Keep a follow-up to {MAX_FOLLOW_UP_CHARS} characters (it has {chars}); link to the details."),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid(Field::Text, "A follow-up must not contain control characters."));
        }
        if let Some(day) = due {
            if day < today {
                return Err(invalid(
                    Field::Due,
                    format!("The due date {day} is in the past (today is {today}); pick today or a later day."),
                ));
            }
        }
        if let Some(link) = &link {
            let ok = (link.starts_with("https://") || link.starts_with("http://"))
                && link.len() <= 1000
                && !link.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(invalid(
                    Field::Link,
                    format!(
                        "`{}` is not a link; give a full http(s) URL.",
                        link.chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
        Ok(NewFollowUp { text, owner, due, link })
    }
}

/// A stored follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub id: i64,
    pub incident_id: IncidentId,
    /// The incident it belongs to, as people know it.
    pub number: IncidentNumber,
    /// Whether its incident is private (then only the incident's members may read it).
    pub private: bool,
    /// `#seq` within the incident.
    pub seq: i64,
    pub text: String,
    pub owner: Option<UserId>,
    pub due: Option<NaiveDate>,
    /// When it becomes overdue: 00:00 local of the day after `due`.
    pub due_at: Option<DateTime<Utc>>,
    pub link: Option<String>,
    pub state: FollowUpState,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub closed_by: Option<UserId>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The owner's next overdue reminder.
    pub remind_at: Option<DateTime<Utc>>,
}

impl FollowUp {
    /// Open and past its due day.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.state == FollowUpState::Open && self.due_at.is_some_and(|d| now >= d)
    }

    /// Marks it done or won't do. The owner may, and so may the incident's SPOC (who leads the
    /// incident); anyone may close a follow-up that has no owner. Returns the closed follow-up.
    pub fn close(
        &self,
        to: FollowUpState,
        actor: &UserId,
        spoc: &UserId,
        now: DateTime<Utc>,
    ) -> Result<FollowUp, String> {
        let name = format!("{} follow-up #{}", self.number, self.seq);
        if to == FollowUpState::Open {
            return Err(format!("{name} can only be marked done or won't do."));
        }
        if self.state != FollowUpState::Open {
            let by = self
                .closed_by
                .as_ref()
                .map(|u| format!(" by <@{u}>"))
                .unwrap_or_default();
            return Err(format!("{name} is already {}{by}.", self.state));
        }
        if let Some(owner) = &self.owner {
            if actor != owner && actor != spoc {
                return Err(format!(
                    "Only its owner <@{owner}> or the SPOC <@{spoc}> can close {name}."
                ));
            }
        }
        Ok(FollowUp {
            state: to,
            closed_by: Some(actor.clone()),
            closed_at: Some(now),
            remind_at: None,
            ..self.clone()
        })
    }
}

/// The moment a follow-up due on local day `due` becomes overdue: the start of the next day.
pub fn overdue_from(due: NaiveDate, tz: chrono_tz::Tz) -> DateTime<Utc> {
    crate::report::period::start_of_day(tz, due.succ_opt().unwrap_or(due))
}

/// When the owner of a follow-up that became overdue at `due_at` is reminded first: at that
/// moment (none without an owner or a due day: there is nobody to remind, or nothing is late).
pub fn first_reminder(owner: Option<&UserId>, due_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    owner.and(due_at)
}

/// The reminder after the one planned for `planned`, fired at `now`: one period later, or, if
/// the bot was down for longer, one period after `now` (no burst of missed reminders).
pub fn next_reminder(planned: DateTime<Utc>, every: chrono::Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    let next = planned + every;
    if next <= now {
        now + every
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn u(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }
    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }
    fn follow_up() -> FollowUp {
        FollowUp {
            id: 7,
            incident_id: IncidentId(1),
            number: IncidentNumber(42),
            private: false,
            seq: 3,
            text: "Alert on refund errors".into(),
            owner: Some(u("U0DAVE")),
            due: Some(day("2026-12-01")),
            due_at: Some(at(0) + chrono::Duration::days(1)),
            link: None,
            state: FollowUpState::Open,
            created_by: u("U0ALICE"),
            created_at: at(0),
            closed_by: None,
            closed_at: None,
            remind_at: Some(at(0) + chrono::Duration::days(1)),
        }
    }

    #[test]
    fn new_follow_ups_are_checked() {
        let today = day("2026-12-01");
        let ok = NewFollowUp::parse("  Add   an alert ", None, Some(today), None, today).unwrap();
        assert_eq!(ok.text, "Add an alert", "whitespace is collapsed");
        let empty = NewFollowUp::parse("  ", None, None, None, today).unwrap_err();
        assert!(empty.field == Field::Text && empty.message.contains("what needs doing"));
        let past = NewFollowUp::parse("x", None, Some(day("2026-11-30")), None, today).unwrap_err();
        assert_eq!(past.field, Field::Due);
        assert!(
            past.message.contains("2026-11-30") && past.message.contains("past"),
            "{past}"
        );
        assert!(NewFollowUp::parse(&"x".repeat(501), None, None, None, today)
            .unwrap_err()
            .message
            .contains("501"));
        let link = NewFollowUp::parse("x", None, None, Some("javascript:alert(1)".into()), today).unwrap_err();
        assert_eq!(link.field, Field::Link);
        assert!(NewFollowUp::parse("x", None, None, Some("https://wiki/pir".into()), today).is_ok());
    }

    #[test]
    fn overdue_starts_the_day_after_the_due_day() {
        let f = follow_up();
        assert!(!f.is_overdue(at(23)));
        assert!(f.is_overdue(at(0) + chrono::Duration::days(1)));
        let done = f.close(FollowUpState::Done, &u("U0DAVE"), &u("U0BOB"), at(23)).unwrap();
        assert!(
            !done.is_overdue(at(0) + chrono::Duration::days(2)),
            "closed is never overdue"
        );
    }

    #[test]
    fn the_owner_or_the_spoc_closes_it_once() {
        let f = follow_up();
        let (owner, spoc, other) = (u("U0DAVE"), u("U0BOB"), u("U0CAROL"));
        let refused = f.close(FollowUpState::Done, &other, &spoc, at(1)).unwrap_err();
        assert!(refused.contains("<@U0DAVE>") && refused.contains("#3"), "{refused}");
        let done = f.close(FollowUpState::Done, &owner, &spoc, at(1)).unwrap();
        assert_eq!(
            (done.state, done.closed_by.clone(), done.closed_at, done.remind_at),
            (FollowUpState::Done, Some(owner.clone()), Some(at(1)), None)
        );
        let again = done.close(FollowUpState::WontDo, &spoc, &spoc, at(2)).unwrap_err();
        assert!(again.contains("already done by <@U0DAVE>"), "{again}");
        assert_eq!(
            f.close(FollowUpState::WontDo, &spoc, &spoc, at(1)).unwrap().state,
            FollowUpState::WontDo
        );
        let unowned = FollowUp { owner: None, ..f };
        assert!(unowned.close(FollowUpState::Done, &other, &spoc, at(1)).is_ok());
        assert!(unowned.close(FollowUpState::Open, &other, &spoc, at(1)).is_err());
    }

    #[test]
    fn reminders_repeat_each_period_without_a_burst() {
        let every = chrono::Duration::hours(24);
        assert_eq!(first_reminder(None, Some(at(0))), None);
        assert_eq!(first_reminder(Some(&u("U0DAVE")), None), None);
        assert_eq!(first_reminder(Some(&u("U0DAVE")), Some(at(0))), Some(at(0)));
        assert_eq!(next_reminder(at(0), every, at(0)), at(0) + every);
        // Down for three days: one reminder now, the next a period later.
        let now = at(5) + chrono::Duration::days(3);
        assert_eq!(next_reminder(at(0), every, now), now + every);
    }

    #[test]
    fn states_round_trip() {
        for s in FollowUpState::ALL {
            assert_eq!(FollowUpState::parse(s.as_str()), Some(s));
        }
        assert_eq!(FollowUpState::WontDo.to_string(), "won't do");
    }
}
