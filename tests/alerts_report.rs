//! Detection figures in reports (issue 15): time to declare (median, p90, mean), alerts,
//! alerts that became incidents and noisy alerts, in all and per service line, in every format,
//! against a hand-computed fixture (SQLite; PostgreSQL when `TEST_DATABASE_URL` is set).

mod common;

use chrono::{DateTime, Utc};
use incident_bot::config::Policy;
use incident_bot::db::{Db, FixtureAlert, FixtureIncident};
use incident_bot::report::render::{self, Format};
use incident_bot::report::{PeriodSpec, Report};

const MIN: i64 = 60_000;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Monday 2026-11-16 00:00 in New York.
fn t0() -> i64 {
    DateTime::parse_from_rfc3339("2026-11-16T05:00:00Z")
        .unwrap()
        .timestamp_millis()
}

async fn db() -> (Db, Option<tempfile::TempDir>) {
    match common::database() {
        Some((url, schema)) => (Db::connect_with(&url, Some(&schema)).await.unwrap(), None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("alerts.db").display());
            (Db::connect(&url).await.unwrap(), Some(dir))
        }
    }
}

fn incident(number: i64, services: &[&str], declared_at: i64) -> FixtureIncident {
    FixtureIncident {
        number,
        title: format!("fixture {number}"),
        services: services.iter().map(|s| s.to_string()).collect(),
        declared_at,
        ..FixtureIncident::default()
    }
}

fn alert(fp: &str, service: Option<&str>, fires: Vec<i64>, linked: Option<(i64, i64)>) -> FixtureAlert {
    FixtureAlert {
        source: "prometheus".into(),
        fingerprint: fp.into(),
        service: service.map(str::to_string),
        fires,
        linked,
    }
}

#[tokio::test]
async fn reports_carry_time_to_declare_and_alert_counts_in_every_format() {
    let (db, _dir) = db().await;
    let h = 3_600_000;
    // The week: INC-1 (payments, detected 4 min before), INC-2 (payments + checkout, 10 min),
    // INC-3 (checkout, 30 min), INC-4 (declared by hand: no detection time). The week before:
    // INC-5 (payments, 60 min).
    let incidents = vec![
        incident(1, &["payments"], t0() + h),
        incident(2, &["payments", "checkout"], t0() + 2 * h),
        incident(3, &["checkout"], t0() + 3 * h),
        incident(4, &["app"], t0() + 4 * h),
        incident(5, &["payments"], t0() - 24 * h),
    ];
    db.insert_fixtures(&incidents, &[]).await.unwrap();
    let minute = |n: i64| n * MIN;
    let mut noisy_fires: Vec<i64> = (0..12).map(|i| t0() + 5 * h + minute(i)).collect();
    let alerts = vec![
        // Became INC-1 and INC-2; one more payments alert without an incident.
        alert(
            "pay-1",
            Some("payments"),
            vec![t0() + h - minute(4)],
            Some((1, t0() + h)),
        ),
        alert(
            "pay-2",
            Some("payments"),
            vec![t0() + 2 * h - minute(10)],
            Some((2, t0() + 2 * h)),
        ),
        alert(
            "pay-3",
            Some("payments"),
            vec![t0() + 6 * h, t0() + 6 * h + minute(1)],
            None,
        ),
        // Noisy: 12 fires in the week, never an incident.
        alert("chk-noisy", Some("checkout"), std::mem::take(&mut noisy_fires), None),
        // 12 fires but linked: not noisy.
        alert(
            "chk-3",
            Some("checkout"),
            (0..12).map(|i| t0() + 3 * h - minute(30) + minute(i)).collect(),
            Some((3, t0() + 3 * h)),
        ),
        // No service line.
        alert("misc", None, vec![t0() + 7 * h], None),
        // The week before: became INC-5.
        alert(
            "pay-old",
            Some("payments"),
            vec![t0() - 25 * h],
            Some((5, t0() - 24 * h)),
        ),
    ];
    let detected = [
        (1, t0() + h - minute(4)),
        (2, t0() + 2 * h - minute(10)),
        (3, t0() + 3 * h - minute(30)),
        (5, t0() - 25 * h),
    ];
    db.insert_alert_fixtures(&alerts, &detected).await.unwrap();

    let policy = Policy {
        timezone: chrono_tz::America::New_York,
        ..Policy::default()
    };
    let week = PeriodSpec::parse("2026-11-16..2026-11-22").unwrap();
    let r = Report::build(&db, &policy, week, None, now()).await.unwrap();
    let a = &r.current.alerts;
    // Alerts that fired in the week: pay-1, pay-2, pay-3, chk-noisy, chk-3, misc.
    assert_eq!((a.alerts, a.became_incidents, a.noisy), (6, 3, 1));
    // Time to declare: 4, 10, 30 minutes.
    assert_eq!(a.time_to_declare.count, 3);
    assert_eq!(a.time_to_declare.median_ms, Some(10 * MIN));
    assert_eq!(a.time_to_declare.p90_ms, Some(30 * MIN));
    assert_eq!(a.time_to_declare.mean_ms(), Some(44 * MIN / 3));
    assert_eq!(r.previous.alerts.time_to_declare.median_ms, Some(60 * MIN));
    assert_eq!(r.previous.alerts.alerts, 1);
    let names: Vec<&str> = a.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["payments", "checkout", "(none)"]);
    let payments = &a.services[0];
    assert_eq!((payments.alerts, payments.became_incidents, payments.noisy), (3, 2, 0));
    assert_eq!(
        payments.time_to_declare.median_ms,
        Some(4 * MIN),
        "4 and 10 minutes: nearest rank"
    );
    let checkout = &a.services[1];
    assert_eq!((checkout.alerts, checkout.became_incidents, checkout.noisy), (2, 1, 1));
    assert_eq!(checkout.time_to_declare.count, 2, "INC-2 and INC-3");

    let md = render::render(&r, Format::Markdown);
    for line in [
        "| Time to declare, median | 10m | 1h 00m | ▼50m |",
        "| Alerts | 6 | 1 | ▲5 |",
        "| Alerts that became incidents | 3 | 1 | ▲2 |",
        "| Noisy alerts (no incident) | 1 | 0 | ▲1 |",
        "| payments | 3 | 2 | 0 | 4m | 10m | 7m |",
        "| checkout | 2 | 1 | 1 | 10m | 30m | 20m |",
    ] {
        assert!(md.contains(line), "{line} in {md}");
    }
    let csv = render::render(&r, Format::Csv);
    for line in [
        "summary,,time_to_declare_median_minutes,10.00,60.00,-50.00\n",
        "summary,,alerts,6,1,5\n",
        "summary,,noisy_alerts,1,0,1\n",
        "detection,payments,alerts_to_incidents,2,1,1\n",
        "detection,checkout,noisy_alerts,1,0,1\n",
        "detection,payments,time_to_declare_median_minutes,4.00,60.00,-56.00\n",
    ] {
        assert!(csv.contains(line), "{line} in {csv}");
    }
    let json: serde_json::Value = serde_json::from_str(&render::render(&r, Format::Json)).unwrap();
    assert_eq!(json["summary"]["time_to_declare_p90_ms"]["value"], 30 * MIN);
    assert_eq!(json["summary"]["alerts_to_incidents"]["value"], 3);
    assert_eq!(json["detection_services"][1]["service"], "checkout");
    assert_eq!(json["detection_services"][1]["noisy_alerts"], 1);
    let blocks = incident_bot::slack::report::report_blocks(&r).to_string();
    assert!(
        blocks.contains("*Time to declare* (3 incidents from alerts)"),
        "{blocks}"
    );
    assert!(
        blocks.contains("payments: 3 alerts · 2 incidents · 0 noisy · declare median 4m"),
        "{blocks}"
    );

    // One service line: only its alerts and incidents.
    let only = Report::build(&db, &policy, week, Some("checkout"), now())
        .await
        .unwrap();
    let a = &only.current.alerts;
    assert_eq!(
        (a.alerts, a.became_incidents, a.noisy, a.time_to_declare.count),
        (2, 1, 1, 2)
    );
}
