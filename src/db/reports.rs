//! Report figures, aggregated in the database: counts, sums and single percentile rows, so that
//! memory does not grow with the number of incidents. Times are epoch milliseconds on both
//! backends, so `resolved_at - declared_at` means the same everywhere, and the SQL text is the
//! same on both. Update-SLA events are counted per incident as they are appended (triggers of
//! migration 0004 keep `incidents.sla_on_time`, `sla_missed`, `sla_breaches`), so no report
//! query reads the timeline; every one is served by the `incidents_report` covering index
//! (which on PostgreSQL also carries the id, migration 0007), and the follow-up counts join
//! `follow_ups` through its `follow_ups_report` covering index.

use super::{begin_write, with_pool, Db};
use crate::report::metrics::{rank, Compliance, DurationStats};
use crate::report::{Daily, FixtureFollowUp, FollowUps, RawFigures, ServiceGroup, OPEN_STATUSES, SEVERITIES, STATUSES};
use futures_util::TryStreamExt;
use sqlx::Row;
use std::collections::BTreeMap;

/// Which incidents a query covers: declared in `[from_ms, to_ms)`, optionally on one service
/// line. `cap_ms` ends the impact of incidents that have no impact end, mitigation or
/// resolution yet (the period's end, or now if that is earlier). `now_ms` is when the report
/// is made: an open follow-up due at or before it is overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportScope {
    pub from_ms: i64,
    pub to_ms: i64,
    pub cap_ms: i64,
    pub now_ms: i64,
    pub service: Option<String>,
}

impl ReportScope {
    /// `LIKE` pattern matching a JSON list of service names that contains `service` (`!` escapes
    /// LIKE's wildcards; service names are lowercase, so SQLite's case-insensitive LIKE agrees
    /// with PostgreSQL's).
    pub(super) fn service_pattern(&self) -> String {
        match &self.service {
            None => "%".into(),
            Some(name) => {
                let quoted = serde_json::to_string(name).unwrap_or_default();
                let escaped = quoted.replace('!', "!!").replace('%', "!%").replace('_', "!_");
                format!("%{escaped}%")
            }
        }
    }
}

/// `$1..$3` select the period and service line; `{p}` is the incidents table's alias prefix.
fn in_scope(p: &str) -> String {
    format!("{p}declared_at >= $1 AND {p}declared_at < $2 AND {p}services LIKE $3 ESCAPE '!'")
}

/// Canceled incidents are excluded from every metric.
fn live(p: &str) -> String {
    format!("{p}status <> 'canceled' AND {p}canceled_at IS NULL")
}

/// When the impact started for time to mitigate: the earlier of impact start and declaration.
const TTM_START: &str = "CASE WHEN impact_start < declared_at THEN impact_start ELSE declared_at END";

/// The three duration figures: (end column, duration expression).
const DURATIONS: [(&str, &str); 3] = [
    ("acknowledged_at", "acknowledged_at - declared_at"),
    (
        "mitigated_at",
        "mitigated_at - (CASE WHEN impact_start < declared_at THEN impact_start ELSE declared_at END)",
    ),
    ("resolved_at", "resolved_at - declared_at"),
];

/// The follow-up counts of `Db::report_follow_ups`: `$1..$3` the scope, `$4` now.
fn follow_ups_sql() -> String {
    let when = |cond: &str| format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)");
    format!(
        "SELECT CAST(COUNT(*) AS BIGINT), {}, {}, {}, {} FROM incidents i JOIN follow_ups f ON f.incident_id = i.id \
         WHERE {} AND {}",
        when("f.state = 'open'"),
        when("f.state = 'open' AND f.due_at <= $4"),
        when("f.state = 'done'"),
        when("f.state = 'wont_do'"),
        in_scope("i."),
        live("i.")
    )
}

/// An incident row written as given, bypassing the lifecycle rules: for tests and benches.
/// Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureIncident {
    /// Unique; also makes the declare key `fixture:<number>`.
    pub number: i64,
    pub title: String,
    /// `SEV1`..`SEV4`.
    pub severity: String,
    /// `investigating`, `identified`, `mitigated`, `resolved`, `closed` or `canceled`.
    pub status: String,
    pub services: Vec<String>,
    pub is_private: bool,
    pub declared_at: i64,
    pub acknowledged_at: Option<i64>,
    pub identified_at: Option<i64>,
    pub mitigated_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub canceled_at: Option<i64>,
    pub impact_start: Option<i64>,
    pub impact_end: Option<i64>,
    pub customers: Option<i64>,
    pub merchants: Option<i64>,
    pub transactions: Option<i64>,
    /// Its follow-up actions, numbered #1, #2, … in this order.
    pub follow_ups: Vec<FixtureFollowUp>,
}

impl Default for FixtureIncident {
    fn default() -> Self {
        FixtureIncident {
            number: 0,
            title: "fixture".into(),
            severity: "SEV3".into(),
            status: "investigating".into(),
            services: vec![],
            is_private: false,
            declared_at: 0,
            acknowledged_at: None,
            identified_at: None,
            mitigated_at: None,
            resolved_at: None,
            closed_at: None,
            canceled_at: None,
            impact_start: None,
            impact_end: None,
            customers: None,
            merchants: None,
            transactions: None,
            follow_ups: vec![],
        }
    }
}

/// A timeline event for a [`FixtureIncident`] (by its number): for tests and benches.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureEvent {
    pub number: i64,
    pub at: i64,
    pub kind: String,
    pub details: serde_json::Value,
}

const FIXTURE_COLUMNS: [&str; 22] = [
    "number",
    "declare_key",
    "title",
    "severity",
    "status",
    "services",
    "is_private",
    "declared_by",
    "spoc",
    "declared_at",
    "acknowledged_at",
    "identified_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "canceled_at",
    "impact_start",
    "impact_end",
    "customers",
    "merchants",
    "transactions",
    "follow_up_seq",
];

const FIXTURE_FOLLOW_UP_COLUMNS: [&str; 11] = [
    "incident_id",
    "seq",
    "text",
    "owner",
    "due_date",
    "due_at",
    "state",
    "created_by",
    "created_at",
    "closed_by",
    "closed_at",
];

/// `($1, $2, …), (…)` for `rows` rows of `cols` parameters.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row INSERT (well under both backends' parameter limits).
const FIXTURE_BATCH: usize = 500;

impl Db {
    /// Writes incidents, their follow-ups and their events as given, in one transaction
    /// (multi-row inserts, so a benchmark's 100,000 incidents load quickly). For tests and
    /// benches only: nothing is validated and no outbox job is created.
    pub async fn insert_fixtures(&self, incidents: &[FixtureIncident], events: &[FixtureEvent]) -> anyhow::Result<()> {
        let insert_incidents = |n: usize| {
            format!(
                "INSERT INTO incidents ({}) VALUES {} RETURNING id, number",
                FIXTURE_COLUMNS.join(", "),
                placeholders(n, FIXTURE_COLUMNS.len())
            )
        };
        let insert_follow_ups = |n: usize| {
            format!(
                "INSERT INTO follow_ups ({}) VALUES {}",
                FIXTURE_FOLLOW_UP_COLUMNS.join(", "),
                placeholders(n, FIXTURE_FOLLOW_UP_COLUMNS.len())
            )
        };
        let follow_ups: Vec<(i64, i64, i64, &FixtureFollowUp)> = incidents
            .iter()
            .flat_map(|i| {
                i.follow_ups
                    .iter()
                    .zip(1..)
                    .map(move |(f, seq)| (i.number, seq, i.declared_at, f))
            })
            .collect();
        let insert_events = |n: usize| {
            format!(
                "INSERT INTO events (incident_id, at, actor, kind, details) VALUES {}",
                placeholders(n, 5)
            )
        };
        let result: anyhow::Result<()> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let mut ids = BTreeMap::new();
                for chunk in incidents.chunks(FIXTURE_BATCH) {
                    let sql = insert_incidents(chunk.len());
                    let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
                    for i in chunk {
                        q = q
                            .bind(i.number)
                            .bind(format!("fixture:{}", i.number))
                            .bind(&i.title)
                            .bind(&i.severity)
                            .bind(&i.status)
                            .bind(serde_json::to_string(&i.services)?)
                            .bind(i.is_private)
                            .bind("U0FIXTURE")
                            .bind("U0FIXTURE")
                            .bind(i.declared_at)
                            .bind(i.acknowledged_at)
                            .bind(i.identified_at)
                            .bind(i.mitigated_at)
                            .bind(i.resolved_at)
                            .bind(i.closed_at)
                            .bind(i.canceled_at)
                            .bind(i.impact_start)
                            .bind(i.impact_end)
                            .bind(i.customers)
                            .bind(i.merchants)
                            .bind(i.transactions)
                            .bind(i.follow_ups.len() as i64);
                    }
                    ids.extend(
                        q.fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .map(|(id, number)| (number, id)),
                    );
                }
                for chunk in follow_ups.chunks(FIXTURE_BATCH) {
                    let sql = insert_follow_ups(chunk.len());
                    let mut q = sqlx::query(&sql);
                    for (number, seq, declared_at, f) in chunk {
                        let closed_by = f.closed_at.map(|_| "U0FIXTURE");
                        q = q
                            .bind(ids[number])
                            .bind(*seq)
                            .bind(&f.text)
                            .bind(&f.owner)
                            .bind(&f.due_date)
                            .bind(f.due_at)
                            .bind(&f.state)
                            .bind("U0FIXTURE")
                            .bind(f.created_at.unwrap_or(*declared_at))
                            .bind(closed_by)
                            .bind(f.closed_at);
                    }
                    q.execute(&mut *tx).await?;
                }
                let missing =
                    |number: i64| anyhow::anyhow!("fixture event for incident {number}, which is not in the fixtures");
                for chunk in events.chunks(FIXTURE_BATCH) {
                    let sql = insert_events(chunk.len());
                    let mut q = sqlx::query(&sql);
                    for e in chunk {
                        let id = *ids.get(&e.number).ok_or_else(|| missing(e.number))?;
                        q = q
                            .bind(id)
                            .bind(e.at)
                            .bind("U0FIXTURE")
                            .bind(&e.kind)
                            .bind(e.details.to_string());
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
            .await
        });
        result
    }

    /// Everything a report needs for one period, aggregated in SQL: one pass for the counts and
    /// sums, one grouped by list of service lines, one sorted pass per percentile (the
    /// database keeps the sort; one row comes back), and one joining the follow-ups. All read
    /// the `incidents_report` index for the incidents.
    pub async fn report_figures(&self, scope: &ReportScope) -> anyhow::Result<RawFigures> {
        let pattern = scope.service_pattern();
        let (period, alive) = (in_scope(""), live(""));

        // Counts (canceled ones apart), duration counts and sums, footprint totals: one row.
        let when = |cond: &str| format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)");
        let sum = |expr: &str| format!("CAST(COALESCE(SUM(CASE WHEN {alive} THEN {expr} END), 0) AS BIGINT)");
        let mut columns = vec![
            when(&format!("NOT ({alive})")),
            when(&alive),
            when(&format!("{alive} AND status IN ('{}')", OPEN_STATUSES.join("', '"))),
        ];
        columns.extend(
            SEVERITIES
                .iter()
                .map(|s| when(&format!("{alive} AND severity = '{s}'"))),
        );
        columns.extend(STATUSES.iter().map(|s| when(&format!("{alive} AND status = '{s}'"))));
        for (end, expr) in DURATIONS {
            columns.push(when(&format!("{alive} AND {end} IS NOT NULL")));
            columns.push(sum(expr));
        }
        columns.extend(["customers", "merchants", "transactions"].map(sum));
        let totals_sql = format!("SELECT {} FROM incidents WHERE {period}", columns.join(", "));
        let n = columns.len();
        let t: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query(&totals_sql)
                .bind(scope.from_ms)
                .bind(scope.to_ms)
                .bind(&pattern)
                .fetch_one(pool)
                .await
                .and_then(|row| (0..n).map(|i| row.try_get::<i64, _>(i)).collect::<Result<Vec<_>, _>>())
        })?;
        let mut t = t.into_iter();
        let mut next = move || t.next().unwrap_or_default();
        let (canceled, incidents, open) = (next(), next(), next());
        let by_severity = SEVERITIES.iter().map(|s| (s.to_string(), next())).collect();
        let by_status = STATUSES.iter().map(|s| (s.to_string(), next())).collect();
        let mut stats = [(); 3].map(|_| {
            let (count, sum_ms) = (next(), next());
            DurationStats {
                count,
                sum_ms,
                ..DurationStats::default()
            }
        });
        let (customers, merchants, transactions) = (next(), next(), next());

        // Median and p90: the rows at the two nearest ranks, numbered by the database in one
        // sorted pass (the sort spills to disk when large; two rows come back).
        for ((end, expr), s) in DURATIONS.iter().zip(stats.iter_mut()) {
            let (Some(r50), Some(r90)) = (rank(50, s.count), rank(90, s.count)) else {
                continue;
            };
            let ranks_sql = format!(
                "SELECT rn, d FROM (SELECT ROW_NUMBER() OVER (ORDER BY {expr}) AS rn, {expr} AS d FROM incidents \
                 WHERE {period} AND {alive} AND {end} IS NOT NULL) ranked WHERE rn = $4 OR rn = $5"
            );
            let rows: Vec<(i64, i64)> = with_pool!(self, |pool| {
                sqlx::query_as(&ranks_sql)
                    .bind(scope.from_ms)
                    .bind(scope.to_ms)
                    .bind(&pattern)
                    .bind(r50)
                    .bind(r90)
                    .fetch_all(pool)
                    .await
            })?;
            let at = |r: i64| rows.iter().find(|(rn, _)| *rn == r).map(|(_, d)| *d);
            s.median_ms = at(r50);
            s.p90_ms = at(r90);
        }

        // Incidents, impact and update-SLA counters per distinct list of service lines.
        let impact =
            "CASE WHEN COALESCE(impact_end, mitigated_at, resolved_at, $4) > COALESCE(impact_start, declared_at) \
             THEN COALESCE(impact_end, mitigated_at, resolved_at, $4) - COALESCE(impact_start, declared_at) ELSE 0 END";
        let groups_sql = format!(
            "SELECT services, COUNT(*), CAST(COALESCE(SUM({impact}), 0) AS BIGINT), \
             CAST(COALESCE(SUM(sla_on_time), 0) AS BIGINT), CAST(COALESCE(SUM(sla_missed), 0) AS BIGINT), \
             CAST(COALESCE(SUM(sla_breaches), 0) AS BIGINT) FROM incidents WHERE {period} AND {alive} GROUP BY services"
        );
        type Group = (String, i64, i64, i64, i64, i64);
        let groups: Vec<Group> = with_pool!(self, |pool| {
            sqlx::query_as(&groups_sql)
                .bind(scope.from_ms)
                .bind(scope.to_ms)
                .bind(&pattern)
                .bind(scope.cap_ms)
                .fetch_all(pool)
                .await
        })?;
        let groups = groups
            .into_iter()
            .map(|(list, incidents, impact_ms, on_time, missed, breaches)| ServiceGroup {
                services: serde_json::from_str(&list).unwrap_or_default(),
                incidents,
                impact_ms,
                compliance: Compliance { on_time, missed },
                breaches,
            })
            .collect();

        let follow_ups = self.report_follow_ups(scope).await?;
        let alerts = self.report_alert_rows(scope).await?;

        let [tta, ttm, ttr] = stats;
        Ok(RawFigures {
            incidents,
            canceled,
            open,
            by_severity,
            by_status,
            tta,
            ttm,
            ttr,
            customers,
            merchants,
            transactions,
            groups,
            follow_ups,
            alerts,
        })
    }

    /// The follow-ups of the scope's incidents that are not canceled, by state now; overdue =
    /// open and due at or before `now_ms`. One aggregate over the join, index-only: the period's
    /// incidents from `incidents_report`, each one's follow-ups from `follow_ups_report`.
    async fn report_follow_ups(&self, scope: &ReportScope) -> anyhow::Result<FollowUps> {
        let sql = follow_ups_sql();
        let (total, open, overdue, done, wont_do): (i64, i64, i64, i64, i64) = with_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(scope.from_ms)
                .bind(scope.to_ms)
                .bind(scope.service_pattern())
                .bind(scope.now_ms)
                .fetch_one(pool)
                .await
        })?;
        Ok(FollowUps {
            total,
            open,
            overdue,
            done,
            wont_do,
        })
    }

    /// Incidents per day by severity and time to mitigate per day (for the chart), streamed:
    /// `day_bounds` are the first instants (ms) of each day plus the end; memory is one bin a day.
    pub async fn report_daily(&self, scope: &ReportScope, day_bounds: &[i64]) -> anyhow::Result<Vec<Daily>> {
        let days = day_bounds.len().saturating_sub(1);
        let mut bins = vec![Daily::default(); days];
        let sql = format!(
            "SELECT declared_at, severity, mitigated_at - ({TTM_START}) FROM incidents WHERE {} AND {}",
            in_scope(""),
            live("")
        );
        let pattern = scope.service_pattern();
        let mut add = |declared_at: i64, severity: &str, ttm: Option<i64>| {
            let day = day_bounds.partition_point(|b| *b <= declared_at);
            if day == 0 || day > days {
                return;
            }
            let bin = &mut bins[day - 1];
            if let Some(i) = ["SEV1", "SEV2", "SEV3", "SEV4"].iter().position(|s| *s == severity) {
                bin.incidents[i] += 1;
            }
            if let Some(ttm) = ttm {
                bin.ttm_sum_ms += ttm;
                bin.ttm_count += 1;
            }
        };
        with_pool!(self, |pool| {
            let mut rows = sqlx::query_as::<_, (i64, String, Option<i64>)>(&sql)
                .bind(scope.from_ms)
                .bind(scope.to_ms)
                .bind(&pattern)
                .fetch(pool);
            while let Some((declared_at, severity, ttm)) = rows.try_next().await? {
                add(declared_at, &severity, ttm);
            }
        });
        Ok(bins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_patterns_escape_like_wildcards() {
        let scope = |s: Option<&str>| ReportScope {
            from_ms: 0,
            to_ms: 0,
            cap_ms: 0,
            now_ms: 0,
            service: s.map(String::from),
        };
        assert_eq!(scope(None).service_pattern(), "%");
        assert_eq!(scope(Some("payments")).service_pattern(), "%\"payments\"%");
        assert_eq!(scope(Some("tech_ops")).service_pattern(), "%\"tech!_ops\"%");
    }

    #[tokio::test]
    async fn follow_up_counts_read_two_covering_indexes_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("plan.db").display()))
            .await
            .unwrap();
        let Db::Sqlite(pool) = &db else {
            unreachable!("a sqlite URL")
        };
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", follow_ups_sql()))
            .bind(0_i64)
            .bind(1_i64)
            .bind("%")
            .bind(1_i64)
            .fetch_all(pool)
            .await
            .unwrap();
        let plan: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH i USING COVERING INDEX incidents_report (declared_at>? AND declared_at<?)"),
            "{plan:?}"
        );
        assert!(
            plan[1].starts_with("SEARCH f USING COVERING INDEX follow_ups_report (incident_id=?)"),
            "{plan:?}"
        );
    }

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(placeholders(2, 2), "($1, $2), ($3, $4)");
    }
}
