//! Report periods: which local days a report covers, as a half-open UTC interval `[from, to)`.
//! Pure: the caller passes `now` and the time zone.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::fmt;

/// The longest range a report covers.
pub const MAX_DAYS: i64 = 366;

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodSpec {
    /// The last 7 local days, today included (the default).
    Last7Days,
    /// The previous ISO week, Monday to Sunday.
    Weekly,
    /// The previous calendar month.
    Monthly,
    /// From `first` to `last`, both days included.
    Range { first: NaiveDate, last: NaiveDate },
}

pub const PERIOD_USAGE: &str = "`weekly`, `monthly` or `YYYY-MM-DD..YYYY-MM-DD` (both days included, at most a year)";

impl PeriodSpec {
    /// Reads `weekly`, `monthly`, `last7` or `YYYY-MM-DD..YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<PeriodSpec, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "weekly" | "week" => return Ok(PeriodSpec::Weekly),
            "monthly" | "month" => return Ok(PeriodSpec::Monthly),
            "last7" | "7d" => return Ok(PeriodSpec::Last7Days),
            _ => {}
        }
        let Some((a, b)) = t.split_once("..") else {
            return Err(format!("`{}` is not a period; use {PERIOD_USAGE}.", short(t)));
        };
        Self::range(parse_date(a)?, parse_date(b)?)
    }

    /// A checked range of days, both included.
    pub fn range(first: NaiveDate, last: NaiveDate) -> Result<PeriodSpec, String> {
        if last < first {
            return Err(format!("The period ends ({last}) before it starts ({first})."));
        }
        let days = (last - first).num_days() + 1;
        if days > MAX_DAYS {
            return Err(format!(
                "That period is {days} days long; a report covers at most {MAX_DAYS} days."
            ));
        }
        Ok(PeriodSpec::Range { first, last })
    }
}

/// Reads `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .filter(|_| t.len() == 10)
        .ok_or_else(|| format!("`{}` is not a date; write it like 2026-11-16.", short(t)))
}

fn short(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(39).collect::<String>())
    }
}

/// A resolved period: local days `first..=last` in `tz`, i.e. `[from, to)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub spec: PeriodSpec,
    pub tz: Tz,
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The first instant of local day `date` in `tz`. When midnight does not exist (a DST gap at
/// midnight) the day starts at the first local time that does; when it exists twice, at the
/// earlier one.
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    // Gaps are at most a few hours; step a quarter of an hour at a time until time exists.
    for quarter in 0..(4 * 24) {
        let local = midnight + chrono::Duration::minutes(15 * quarter);
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    Utc.from_utc_datetime(&midnight)
}

impl Period {
    /// Resolves `spec` in `tz` as of `now`.
    pub fn resolve(spec: PeriodSpec, tz: Tz, now: DateTime<Utc>) -> Period {
        let today = now.with_timezone(&tz).date_naive();
        let (first, last) = match spec {
            PeriodSpec::Last7Days => (today - Days::new(6), today),
            PeriodSpec::Weekly => {
                let monday = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
                (monday - Days::new(7), monday - Days::new(1))
            }
            PeriodSpec::Monthly => {
                let this_month = today.with_day(1).expect("day 1 exists");
                (this_month - Months::new(1), this_month - Days::new(1))
            }
            PeriodSpec::Range { first, last } => (first, last),
        };
        Self::of_days(spec, tz, first, last)
    }

    fn of_days(spec: PeriodSpec, tz: Tz, first: NaiveDate, last: NaiveDate) -> Period {
        Period {
            spec,
            tz,
            first,
            last,
            from: start_of_day(tz, first),
            to: start_of_day(tz, last + Days::new(1)),
        }
    }

    /// Number of local days covered.
    pub fn days(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }

    /// The period just before, of the same length: the previous calendar month for a monthly
    /// report, otherwise the same number of days ending the day before `first`.
    pub fn previous(&self) -> Period {
        let (first, last) = match self.spec {
            PeriodSpec::Monthly => (self.first - Months::new(1), self.first - Days::new(1)),
            _ => (self.first - Days::new(self.days() as u64), self.first - Days::new(1)),
        };
        Self::of_days(self.spec, self.tz, first, last)
    }

    /// The first instant of each local day, plus the end: `days() + 1` boundaries.
    pub fn day_bounds(&self) -> Vec<DateTime<Utc>> {
        let mut out: Vec<_> = (0..self.days() as u64)
            .map(|d| start_of_day(self.tz, self.first + Days::new(d)))
            .collect();
        out.push(self.to);
        out
    }

    /// The local dates of [`Period::day_bounds`] (without the end).
    pub fn dates(&self) -> Vec<NaiveDate> {
        (0..self.days() as u64).map(|d| self.first + Days::new(d)).collect()
    }

    /// A short name: "weekly", "monthly", "last 7 days" or "custom".
    pub fn kind(&self) -> &'static str {
        match self.spec {
            PeriodSpec::Last7Days => "last 7 days",
            PeriodSpec::Weekly => "weekly",
            PeriodSpec::Monthly => "monthly",
            PeriodSpec::Range { .. } => "custom",
        }
    }
}

impl fmt::Display for Period {
    /// `2026-11-16 – 2026-11-22 (Europe/London)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{} ({})", self.first, self.tz)
        } else {
            write!(f, "{} – {} ({})", self.first, self.last, self.tz)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Europe, UTC};

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn words_and_ranges_parse() {
        assert_eq!(PeriodSpec::parse("weekly"), Ok(PeriodSpec::Weekly));
        assert_eq!(PeriodSpec::parse("Monthly"), Ok(PeriodSpec::Monthly));
        assert_eq!(
            PeriodSpec::parse("2026-11-16..2026-11-22"),
            Ok(PeriodSpec::Range {
                first: d("2026-11-16"),
                last: d("2026-11-22")
            })
        );
        assert!(PeriodSpec::parse("2026-11-16..2026-11-16").is_ok(), "one day");
        let cases = [
            ("2026-11-22..2026-11-16", "before it starts"),
            ("2026-13-01..2026-12-01", "not a date"),
            ("2026-11-1..2026-11-22", "not a date"),
            ("yesterday", "not a period"),
            ("2025-01-01..2026-01-02", "at most 366"),
            ("2026-11-16..", "not a date"),
        ];
        for (text, problem) in cases {
            let err = PeriodSpec::parse(text).unwrap_err();
            assert!(err.contains(problem), "{text}: {err}");
        }
        assert!(
            PeriodSpec::parse("2024-01-01..2024-12-31").is_ok(),
            "a leap year is 366 days"
        );
    }

    #[test]
    fn weekly_is_the_previous_iso_week_in_the_zone() {
        // Wednesday 2026-11-25 10:00 UTC.
        let p = Period::resolve(PeriodSpec::Weekly, Europe::London, utc("2026-11-25T10:00:00Z"));
        assert_eq!((p.first, p.last), (d("2026-11-16"), d("2026-11-22")));
        assert_eq!(p.from, utc("2026-11-16T00:00:00Z"), "London is on GMT in November");
        assert_eq!(p.to, utc("2026-11-23T00:00:00Z"));
        // On a Monday the previous week is the one that just ended.
        let p = Period::resolve(PeriodSpec::Weekly, UTC, utc("2026-11-23T00:00:00Z"));
        assert_eq!((p.first, p.last), (d("2026-11-16"), d("2026-11-22")));
        // Sunday 23:30 UTC is already Monday in Tokyo: the week before is then the one just ended.
        let p = Period::resolve(PeriodSpec::Weekly, chrono_tz::Asia::Tokyo, utc("2026-11-22T23:30:00Z"));
        assert_eq!((p.first, p.last), (d("2026-11-16"), d("2026-11-22")));
        assert_eq!(p.from, utc("2026-11-15T15:00:00Z"), "Tokyo midnight is 15:00 UTC");
        assert_eq!(p.previous().first, d("2026-11-09"));
    }

    #[test]
    fn monthly_and_its_previous_month() {
        let p = Period::resolve(PeriodSpec::Monthly, Europe::London, utc("2026-04-01T00:30:00+01:00"));
        // 2026-04-01 00:30 BST is 2026-03-31 23:30 UTC, but the local day is April 1st.
        assert_eq!((p.first, p.last), (d("2026-03-01"), d("2026-03-31")));
        assert_eq!(p.from, utc("2026-03-01T00:00:00Z"));
        assert_eq!(p.to, utc("2026-03-31T23:00:00Z"), "April starts at 00:00 BST");
        assert_eq!(p.days(), 31);
        let prev = p.previous();
        assert_eq!((prev.first, prev.last), (d("2026-02-01"), d("2026-02-28")));
        let jan = Period::resolve(PeriodSpec::Monthly, UTC, utc("2026-01-15T00:00:00Z"));
        assert_eq!((jan.first, jan.last), (d("2025-12-01"), d("2025-12-31")));
    }

    #[test]
    fn default_is_the_last_seven_days_including_today() {
        let p = Period::resolve(PeriodSpec::Last7Days, UTC, utc("2026-11-25T10:00:00Z"));
        assert_eq!((p.first, p.last), (d("2026-11-19"), d("2026-11-25")));
        let prev = p.previous();
        assert_eq!((prev.first, prev.last), (d("2026-11-12"), d("2026-11-18")));
        assert_eq!(prev.to, p.from);
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        // London springs forward on 2026-03-29 and falls back on 2026-10-25.
        let spec = PeriodSpec::range(d("2026-03-28"), d("2026-03-30")).unwrap();
        let p = Period::resolve(spec, Europe::London, utc("2026-04-01T00:00:00Z"));
        let b = p.day_bounds();
        assert_eq!(b.len(), 4);
        assert_eq!((b[2] - b[1]).num_hours(), 23);
        let spec = PeriodSpec::range(d("2026-10-25"), d("2026-10-25")).unwrap();
        let p = Period::resolve(spec, Europe::London, utc("2026-11-01T00:00:00Z"));
        assert_eq!((p.to - p.from).num_hours(), 25);
        assert_eq!(p.to_string(), "2026-10-25 (Europe/London)");
    }

    #[test]
    fn a_day_without_midnight_starts_at_its_first_minute() {
        // Santiago skipped 2022-09-11 00:00 (clocks went from 00:00 to 01:00).
        let start = start_of_day(America::Santiago, d("2022-09-11"));
        assert_eq!(start, utc("2022-09-11T04:00:00Z"), "01:00 -03 is 04:00 UTC");
    }
}
