//! Cron-scheduled reports, pure part: which local wall-clock slot comes next, and when it is.
//!
//! The cron expression is evaluated on the local wall clock of the configured time zone, then
//! each wall-clock slot is placed in real time: a slot in a repeated hour (autumn) fires once,
//! at its first occurrence; a slot in a skipped hour (spring) fires once, when the clock jumps
//! past it. The slot's wall-clock time is its identity in the database, so it fires once.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The first slot of `schedule` strictly after the wall-clock time `after`: (slot, instant).
pub fn next_slot(schedule: &cron::Schedule, tz: Tz, after: NaiveDateTime) -> Option<(NaiveDateTime, DateTime<Utc>)> {
    let wall = schedule.after(&Utc.from_utc_datetime(&after)).next()?.naive_utc();
    let instant = match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(first, _) => first,
        LocalResult::None => tz.from_local_datetime(&(wall + Duration::hours(1))).earliest()?,
    };
    Some((wall, instant.with_timezone(&Utc)))
}

/// Where to start looking for slots when the bot starts: just before the most recent slot of
/// the last hour that is already due, so a report missed during a restart is sent once (late),
/// and older ones are not replayed.
pub fn resume_after(schedule: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> NaiveDateTime {
    let now_wall = now.with_timezone(&tz).naive_local();
    let mut after = now_wall - Duration::hours(1);
    let mut resume = now_wall;
    for _ in 0..100_000 {
        match next_slot(schedule, tz, after) {
            Some((slot, at)) if at <= now => {
                resume = slot - Duration::seconds(1);
                after = slot;
            }
            _ => break,
        }
    }
    resume
}

/// The slot's identity in the database.
pub fn slot_key(slot: NaiveDateTime) -> String {
    slot.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// How long a schedule waits before trying a slot again after `failures` temporary failures
/// in a row (Slack or the database unavailable): 10 s, doubling, at most 30 minutes. Meanwhile
/// the other schedules run on time.
pub fn retry_backoff(failures: u32) -> std::time::Duration {
    let secs = 10u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    std::time::Duration::from_secs(secs.min(30 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use std::str::FromStr;

    fn wall(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    #[test]
    fn temporary_failures_back_off_up_to_half_an_hour() {
        assert_eq!(retry_backoff(1).as_secs(), 10);
        assert_eq!(retry_backoff(2).as_secs(), 20);
        assert_eq!(retry_backoff(4).as_secs(), 80);
        assert_eq!(retry_backoff(50).as_secs(), 1800);
    }

    #[test]
    fn weekly_slots_in_the_configured_zone() {
        let s = cron::Schedule::from_str("0 0 9 * * Mon").unwrap();
        let (slot, at) = next_slot(&s, chrono_tz::Europe::London, wall(2026, 11, 18, 12, 0)).unwrap();
        assert_eq!(slot, wall(2026, 11, 23, 9, 0));
        assert_eq!(
            at,
            Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap(),
            "London is UTC in November"
        );
        let (_, summer) = next_slot(&s, chrono_tz::Europe::London, wall(2026, 7, 1, 0, 0)).unwrap();
        assert_eq!(
            summer,
            Utc.with_ymd_and_hms(2026, 7, 6, 8, 0, 0).unwrap(),
            "BST is UTC+1"
        );
    }

    #[test]
    fn a_skipped_local_time_fires_once_when_the_clock_jumps() {
        let s = cron::Schedule::from_str("0 30 2 * * *").unwrap();
        let ny = chrono_tz::America::New_York;
        let (slot, at) = next_slot(&s, ny, wall(2026, 3, 8, 0, 0)).unwrap();
        assert_eq!(slot, wall(2026, 3, 8, 2, 30), "02:30 does not exist that night");
        assert_eq!(
            at,
            Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap(),
            "fires at 03:30 EDT"
        );
        assert_eq!(next_slot(&s, ny, slot).unwrap().0, wall(2026, 3, 9, 2, 30));
    }

    #[test]
    fn on_start_only_the_latest_missed_slot_is_due() {
        let s = cron::Schedule::from_str("0 */10 * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 25, 0).unwrap();
        let after = resume_after(&s, chrono_tz::UTC, now);
        let (slot, at) = next_slot(&s, chrono_tz::UTC, after).unwrap();
        assert_eq!(slot, wall(2026, 11, 23, 9, 20), "the 09:20 report, not 08:30…09:10");
        assert!(at <= now);
        let quiet = cron::Schedule::from_str("0 0 9 * * Mon").unwrap();
        let resumed = next_slot(&quiet, chrono_tz::UTC, resume_after(&quiet, chrono_tz::UTC, now))
            .unwrap()
            .0;
        assert_eq!(
            resumed,
            wall(2026, 11, 23, 9, 0),
            "this Monday's 09:00, missed 25 min ago, is sent on start"
        );
        let tuesday = now + Duration::days(1);
        let later = next_slot(&quiet, chrono_tz::UTC, resume_after(&quiet, chrono_tz::UTC, tuesday))
            .unwrap()
            .0;
        assert_eq!(later, wall(2026, 11, 30, 9, 0), "a day late is too late: next week's");
    }

    #[test]
    fn a_repeated_local_time_fires_once() {
        let s = cron::Schedule::from_str("0 30 1 * * *").unwrap();
        let ny = chrono_tz::America::New_York;
        let (slot, at) = next_slot(&s, ny, wall(2026, 11, 1, 0, 0)).unwrap();
        assert_eq!(slot, wall(2026, 11, 1, 1, 30));
        assert_eq!(
            at,
            Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap(),
            "the first 01:30 (EDT)"
        );
        // After firing, the next slot is the next day's: the second 01:30 (EST) is the same slot.
        assert_eq!(next_slot(&s, ny, slot).unwrap().0, wall(2026, 11, 2, 1, 30));
        assert_eq!(slot_key(slot), "2026-11-01T01:30:00");
    }
}
