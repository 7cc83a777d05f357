//! Store behaviour that needs a real database: numbering under concurrency (two "replicas",
//! i.e. two pools on one database), idempotent declarations, outbox claiming.

mod common;

use incident_bot::db::{Db, DeclareOutcome};
use incident_bot::incident::model::*;
use std::collections::BTreeSet;
use std::time::Duration;

/// The triage poster's policy: posting, with `update_gap` between a message's updates.
fn posting_every(update_gap: Duration) -> incident_bot::db::SyncPolicy {
    incident_bot::db::SyncPolicy {
        posting: true,
        update_gap,
    }
}

async fn two_pools() -> (Db, Db, Option<std::path::PathBuf>) {
    match common::database() {
        Some((url, schema)) => (
            Db::connect_with(&url, Some(&schema)).await.unwrap(),
            Db::connect_with(&url, Some(&schema)).await.unwrap(),
            None,
        ),
        None => {
            let file = std::env::temp_dir().join(format!("incident-bot-store-{}.db", uuid::Uuid::new_v4()));
            let url = format!("sqlite://{}", file.display());
            (
                Db::connect(&url).await.unwrap(),
                Db::connect(&url).await.unwrap(),
                Some(file),
            )
        }
    }
}

fn new_incident(title: &str) -> NewIncident {
    NewIncident {
        title: Title::parse(title).unwrap(),
        severity: Severity::Sev3,
        services: vec![],
        description: "d".into(),
        spoc: UserId::parse("U0ALICE").unwrap(),
        declared_by: UserId::parse("U0ALICE").unwrap(),
        is_private: false,
        origin_channel: None,
    }
}

#[tokio::test]
async fn concurrent_declares_on_two_replicas_never_share_a_number() {
    let (a, b, file) = two_pools().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let db = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            match db
                .declare(
                    &new_incident(&format!("n{i}")),
                    &format!("view:{i}"),
                    chrono::Utc::now(),
                    &slas(),
                )
                .await
                .unwrap()
            {
                DeclareOutcome::Created(inc) => inc.number.0,
                DeclareOutcome::Duplicate(_) => panic!("distinct keys are not duplicates"),
            }
        }));
    }
    let mut numbers = BTreeSet::new();
    for t in tasks {
        assert!(numbers.insert(t.await.unwrap()), "a number was handed out twice");
    }
    assert_eq!(numbers.len(), 40);
    assert_eq!(*numbers.iter().next_back().unwrap(), 40, "no gaps when nothing failed");
    if let Some(f) = file {
        let _ = std::fs::remove_file(f);
    }
}

#[tokio::test]
async fn the_same_declaration_twice_is_stored_once() {
    let (a, b, _file) = two_pools().await;
    let now = chrono::Utc::now();
    let dup = new_incident("dup");
    let slas = slas();
    let (x, y) = tokio::join!(
        a.declare(&dup, "view:same", now, &slas),
        b.declare(&dup, "view:same", now, &slas)
    );
    let outcomes = [x.unwrap(), y.unwrap()];
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, DeclareOutcome::Created(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert_eq!(a.incident_count().await.unwrap(), 1);
    let id = match &outcomes[0] {
        DeclareOutcome::Created(i) | DeclareOutcome::Duplicate(i) => i.id,
    };
    assert_eq!(a.timeline(id).await.unwrap().len(), 1, "one declared event");
}

#[tokio::test]
async fn a_job_is_claimed_by_one_replica_until_its_lease_expires() {
    let (a, b, _file) = two_pools().await;
    let now = chrono::Utc::now();
    a.declare(&new_incident("lease"), "view:lease", now, &slas())
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    let (x, y) = tokio::join!(a.claim_jobs("a", now, lease, 10), b.claim_jobs("b", now, lease, 10));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "exactly one replica holds the job");
    assert!(x.iter().chain(&y).all(|j| !j.uncertain), "a fresh job is certain");
    let later = now + chrono::Duration::seconds(31);
    let reclaimed = b.claim_jobs("b", later, lease, 10).await.unwrap();
    assert_eq!(reclaimed.len(), 1, "an expired lease is taken over");
    assert_eq!(reclaimed[0].attempt, 2);
    // Its holder may have done it at Slack before dying: the new holder looks first.
    assert!(reclaimed[0].uncertain, "a taken-over job is an uncertain outcome");
    assert_eq!(
        a.next_job_due().await.unwrap().map(|d| d.timestamp_millis()),
        Some((later + chrono::Duration::seconds(30)).timestamp_millis())
    );
}

/// One interaction (a form, a click) applies its change once even when two replicas receive
/// it at the same moment: on PostgreSQL the second waits on the first's key and then finds it.
#[tokio::test]
async fn a_change_with_one_key_applies_once_across_two_replicas() {
    use incident_bot::db::Refused;
    use incident_bot::incident::change::Change;
    let (a, b, _file) = two_pools().await;
    let rules = incident_bot::config::Policy::default().rules();
    let alice = UserId::parse("U0ALICE").unwrap();
    let now = chrono::Utc::now();
    for round in 0..10 {
        let DeclareOutcome::Created(inc) = a
            .declare(
                &new_incident(&format!("key {round}")),
                &format!("view:key{round}"),
                now,
                &slas(),
            )
            .await
            .unwrap()
        else {
            panic!("declared")
        };
        let change = Change::Severity(Severity::Sev1);
        let key = format!("view:change{round}");
        let (x, y) = tokio::join!(
            a.apply_change(inc.id, &change, &alice, now, Some(&key), &rules),
            b.apply_change(inc.id, &change, &alice, now, Some(&key), &rules)
        );
        let outcomes = [x.unwrap(), y.unwrap()];
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
        assert!(
            outcomes.iter().any(|o| o == &Err(Refused::AlreadyHandled)),
            "the other one is the same interaction again: {outcomes:?}"
        );
        let severity_events = a
            .timeline(inc.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::Severity.as_str())
            .count();
        assert_eq!(severity_events, 1);
    }
}

/// Declares `n` SEV3 incidents on `db`; their ids.
async fn declared(db: &Db, prefix: &str, n: usize) -> Vec<IncidentId> {
    let mut ids = Vec::new();
    for k in 0..n {
        let title = format!("{prefix} {k}");
        let DeclareOutcome::Created(inc) = db
            .declare(
                &new_incident(&title),
                &format!("view:{title}"),
                chrono::Utc::now(),
                &slas(),
            )
            .await
            .unwrap()
        else {
            panic!("{title} declared")
        };
        ids.push(inc.id);
    }
    ids
}

/// Starts `calls` side by side while holding the write turn (SQLite), then lets them go
/// together, so that they queue for one group commit; their results, in order, each expected
/// not to be a database failure.
async fn behind_the_write_turn<T, F>(db: &Db, calls: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let turn = db.writer().await;
    let pending: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(turn);
    let mut results = Vec::new();
    for p in pending {
        results.push(p.await.unwrap().expect("no database failure"));
    }
    results
}

/// Changes that arrive while another writer holds SQLite's write turn are committed together
/// (one group) when it is free, and each gets its own answer: a second change to the same
/// incident waits for the next group and reads the first one's result, and when the database
/// refuses the group (two changes with one key), each change is committed alone, so that the
/// refusal is one change's. PostgreSQL has no write turn; the outcomes are the same.
#[tokio::test]
async fn changes_queued_together_are_committed_together_and_fail_alone() {
    use incident_bot::db::Refused;
    use incident_bot::incident::change::Change;
    let (db, _b, _file) = two_pools().await;
    let ids = declared(&db, "group", 4).await;
    let rules = incident_bot::config::Policy::default().rules();
    let alice = UserId::parse("U0ALICE").unwrap();
    let sev1 = Change::Severity(Severity::Sev1);
    // Queued behind a write turn held here, then let go together.
    let queued_together = |changes: Vec<(IncidentId, &'static str)>| {
        let calls = changes.into_iter().map(|(id, key)| {
            let (db, rules, alice, change) = (db.clone(), rules.clone(), alice.clone(), sev1.clone());
            async move {
                db.apply_change(id, &change, &alice, chrono::Utc::now(), Some(key), &rules)
                    .await
            }
        });
        behind_the_write_turn(&db, calls.collect())
    };
    let mut outcomes = queued_together(vec![(ids[0], "view:g1"), (ids[1], "view:g2"), (ids[0], "view:g3")]).await;
    outcomes.extend(queued_together(vec![(ids[2], "view:same"), (ids[3], "view:same")]).await);
    // Of the two changes to incident 0, the first applies and the second reads its result. On
    // PostgreSQL, with no write turn to queue behind, they run side by side, in either order.
    let mut on_first = [&outcomes[0], &outcomes[2]];
    if db.is_postgres() {
        on_first.sort_by_key(|o| o.is_err());
    }
    assert!(on_first[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    let same_key = [&outcomes[3], &outcomes[4]];
    assert_eq!(same_key.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(same_key.contains(&&Err(Refused::AlreadyHandled)), "{outcomes:?}");
    let already = format!("{} is already SEV1.", db.incident(ids[0]).await.unwrap().number);
    assert_eq!(
        on_first[1],
        &Err(Refused::Rule(already)),
        "the second change read the first's result"
    );
    let mut severity_events = Vec::new();
    for id in &ids {
        let events = db.timeline(*id).await.unwrap();
        severity_events.push(events.iter().filter(|e| e.kind == EventKind::Severity.as_str()).count());
    }
    // The two changes with one key are one interaction: it changed one of the two incidents.
    assert_eq!(severity_events[..2], [1, 1]);
    assert_eq!(severity_events[2] + severity_events[3], 1, "{severity_events:?}");
}

/// Declarations queued behind the write turn (SQLite) are committed together when it is free,
/// each whole: its number (gap-free, one each), its `declared` event, its channel job, its
/// customer clock and its change correlation. When the database refuses the group (a
/// declaration stored before), each is committed alone, so that only that one is a duplicate;
/// the same declaration twice in one queue waits for the next group and finds the first.
/// PostgreSQL has no write turn; the outcomes are the same.
#[tokio::test]
async fn declarations_queued_together_are_committed_together_and_fail_alone() {
    let (db, _b, _file) = two_pools().await;
    let mut slas = slas();
    for sla in slas.0.iter_mut() {
        sla.customer_every = chrono::Duration::minutes(30);
    }
    let before = declared(&db, "stored before", 1).await[0];
    let queued_together = |titles: Vec<&'static str>| {
        let calls = titles.into_iter().map(|title| {
            let db = db.clone();
            async move {
                let new = new_incident(title);
                db.declare(&new, &format!("view:{title}"), chrono::Utc::now(), &slas)
                    .await
            }
        });
        behind_the_write_turn(&db, calls.collect())
    };
    let created = |o: &DeclareOutcome| match o {
        DeclareOutcome::Created(i) => Some(i.clone()),
        DeclareOutcome::Duplicate(_) => None,
    };
    // One group of three.
    let first = queued_together(vec!["grouped a", "grouped b", "grouped c"]).await;
    let mut incidents: Vec<Incident> = first.iter().filter_map(created).collect();
    assert_eq!(incidents.len(), 3, "{first:?}");
    // A group the database refuses, with one declaration twice.
    let second = queued_together(vec!["grouped d", "stored before 0", "grouped e", "grouped d"]).await;
    assert!(
        matches!(&second[1], DeclareOutcome::Duplicate(i) if i.id == before),
        "{second:?}"
    );
    // On PostgreSQL, with no write turn to queue behind, the two run side by side: either wins.
    let mut twice = [&second[0], &second[3]];
    if db.is_postgres() {
        twice.sort_by_key(|o| created(o).is_none());
    }
    let d = created(twice[0]).expect("the first `grouped d` is new");
    assert!(
        matches!(twice[1], DeclareOutcome::Duplicate(i) if i.id == d.id),
        "{second:?}"
    );
    incidents.push(d);
    incidents.push(created(&second[2]).expect("`grouped e` is new"));
    let mut numbers: Vec<i64> = incidents.iter().map(|i| i.number.0).collect();
    numbers.sort();
    let first_number = db.incident(before).await.unwrap().number.0 + 1;
    assert_eq!(
        numbers,
        (first_number..first_number + 5).collect::<Vec<_>>(),
        "one number each, no gaps"
    );
    let correlations = db
        .claim_change_jobs(
            chrono::Utc::now() + chrono::Duration::hours(1),
            std::time::Duration::from_secs(60),
            100,
        )
        .await
        .unwrap();
    for incident in &incidents {
        let stored = db.incident(incident.id).await.unwrap();
        assert_eq!(&stored, incident, "the answer is the stored row");
        let events = db.timeline(incident.id).await.unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventKind::Declared.as_str());
        assert_eq!(events[0].details["title"], incident.title.as_str());
        assert!(db.customer_update_due(incident.id).await.unwrap().is_some());
        let correlating = correlations
            .iter()
            .filter(|j| j.kind == "correlate" && j.payload["incident"] == incident.id.0)
            .count();
        assert_eq!(correlating, 1, "{correlations:?}");
    }
    // The one stored before had its own channel job; each new one has one.
    assert_eq!(db.pending_jobs().await.unwrap(), 6);
}

/// A change whose caller gives up (the ack's time bound) while it waits for the write turn is
/// left out of the next group: the person was told it failed, so it must not apply later.
#[tokio::test]
async fn a_change_given_up_while_queued_is_not_applied() {
    use incident_bot::incident::change::Change;
    let (db, _b, _file) = two_pools().await;
    if db.is_postgres() {
        // No write turn to queue behind: a change applies at once.
        return;
    }
    let ids = declared(&db, "given up", 2).await;
    let rules = incident_bot::config::Policy::default().rules();
    let alice = UserId::parse("U0ALICE").unwrap();
    let sev1 = Change::Severity(Severity::Sev1);
    let turn = db.writer().await;
    let given_up = {
        let (db, rules, alice, change, id) = (db.clone(), rules.clone(), alice.clone(), sev1.clone(), ids[0]);
        tokio::spawn(async move {
            db.apply_change(id, &change, &alice, chrono::Utc::now(), Some("view:given-up"), &rules)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    given_up.abort();
    assert!(given_up.await.unwrap_err().is_cancelled());
    drop(turn);
    let next = db
        .apply_change(ids[1], &sev1, &alice, chrono::Utc::now(), Some("view:next"), &rules)
        .await
        .unwrap();
    assert!(next.is_ok(), "{next:?}");
    assert_eq!(db.incident(ids[0]).await.unwrap().severity, Severity::Sev3);
    assert_eq!(db.incident(ids[1]).await.unwrap().severity, Severity::Sev1);
}

/// Jobs that finish together are written in one transaction (group commit), each with its own
/// changes; when the database refuses the batch, each job is written alone, so that one job's
/// failure (here a channel id another incident already has) is its own.
#[tokio::test]
async fn jobs_finished_together_are_written_together_and_fail_alone() {
    use incident_bot::db::{DoneJob, JobUpdate, NewJob};
    use incident_bot::outbox::JobKind;
    let (db, _b, _file) = two_pools().await;
    let now = chrono::Utc::now();
    for n in 0..4 {
        db.declare(
            &new_incident(&format!("batch {n}")),
            &format!("view:batch{n}"),
            now,
            &slas(),
        )
        .await
        .unwrap();
    }
    let jobs = db.claim_jobs("a", now, Duration::from_secs(30), 100).await.unwrap();
    assert_eq!(jobs.len(), 4, "one provisioning job per incident");
    let done = |job: &incident_bot::outbox::Job, channel: &str| DoneJob {
        job: job.clone(),
        update: JobUpdate {
            channel: Some((channel.into(), format!("inc-{}", job.incident_id.0))),
            card_ts: Some(format!("{}.000100", job.incident_id.0)),
            event: Some((EventKind::Note, serde_json::json!({ "text": "provisioned" }))),
            then: vec![NewJob::new(JobKind::PinCard)],
            ..JobUpdate::default()
        },
        at: now,
    };
    // Two together: both written, each with its own channel, card, event and next job.
    let results = db
        .complete_jobs(&[done(&jobs[0], "C0BATCH0"), done(&jobs[1], "C0BATCH1")])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for (job, channel) in [(&jobs[0], "C0BATCH0"), (&jobs[1], "C0BATCH1")] {
        let incident = db.incident(job.incident_id).await.unwrap();
        assert_eq!(incident.channel_id.as_deref(), Some(channel));
        assert_eq!(incident.card_ts, Some(format!("{}.000100", job.incident_id.0)));
        let timeline = db.timeline(job.incident_id).await.unwrap();
        assert!(
            timeline.iter().any(|e| e.kind == EventKind::Note.as_str()),
            "{timeline:?}"
        );
    }
    // The other two: the second names a channel incident 1 already has. The first is still
    // written; only the second fails, and stays pending.
    let results = db
        .complete_jobs(&[done(&jobs[2], "C0BATCH2"), done(&jobs[3], "C0BATCH0")])
        .await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(results[1].is_err(), "a channel id cannot be given twice");
    let third = db.incident(jobs[2].incident_id).await.unwrap();
    assert_eq!(third.channel_id.as_deref(), Some("C0BATCH2"));
    assert_eq!(db.incident(jobs[3].incident_id).await.unwrap().channel_id, None);
    // Pending: the fourth's job and the three follow-on pins.
    assert_eq!(db.pending_jobs().await.unwrap(), 4);
}

/// A SQLite restart frees the jobs its dead previous run held, at once, but never those of a
/// run still alive beside it (a replica started in the same process must not repeat them).
#[tokio::test]
async fn a_restart_reclaims_only_the_jobs_of_runs_that_are_gone() {
    let (a, _b, _file) = two_pools().await;
    let now = chrono::Utc::now();
    for title in ["first", "second"] {
        a.declare(&new_incident(title), &format!("view:{title}"), now, &slas())
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(30);
    let held_by_dead = a.claim_jobs("dead", now, lease, 1).await.unwrap();
    let held_by_live = a.claim_jobs("live", now, lease, 1).await.unwrap();
    assert_eq!((held_by_dead.len(), held_by_live.len()), (1, 1));
    let freed = a.reclaim_in_flight_jobs(&["live".to_string()]).await.unwrap();
    assert_eq!(freed, 1, "only the dead run's job is freed");
    let retaken = a.claim_jobs("next", now, lease, 100).await.unwrap();
    let dead_job = retaken.iter().find(|j| j.id == held_by_dead[0].id).expect("free again");
    assert!(dead_job.uncertain, "a reclaimed job looks before repeating");
    assert!(
        retaken.iter().all(|j| j.id != held_by_live[0].id),
        "the live run keeps its job"
    );
}

fn slas() -> incident_bot::reminder::plan::Slas {
    incident_bot::config::Policy::default().slas()
}

/// Overdue follow-ups and due reviews are reminded once even when two replicas fire them at
/// the same moment.
#[tokio::test]
async fn follow_up_and_review_reminders_fire_once_across_two_replicas() {
    use incident_bot::incident::change::Change;
    use incident_bot::incident::followup::NewFollowUp;
    let (a, b, file) = two_pools().await;
    let mut rules = incident_bot::config::Policy::default().rules();
    rules.pir.first_after = incident_bot::incident::pir::Delay::Fixed(chrono::Duration::zero());
    let now = chrono::Utc::now();
    let owner = UserId::parse("U0DAVE").unwrap();
    let alice = UserId::parse("U0ALICE").unwrap();
    for i in 0..10 {
        let DeclareOutcome::Created(inc) = a
            .declare(&new_incident(&format!("r{i}")), &format!("view:r{i}"), now, &slas())
            .await
            .unwrap()
        else {
            panic!("declared")
        };
        let items: Vec<NewFollowUp> = (0..3)
            .map(|j| NewFollowUp {
                text: format!("action {j}"),
                owner: Some(owner.clone()),
                due: Some(now.date_naive()),
                link: None,
            })
            .collect();
        let resolve = Change::Resolve {
            summary: "fixed".into(),
            root_cause: "data".into(),
            mitigated_at: None,
            follow_ups: items,
        };
        // SEV1, so that resolving plans a review reminder (due at once here).
        a.apply_change(inc.id, &Change::Severity(Severity::Sev1), &alice, now, None, &rules)
            .await
            .unwrap()
            .unwrap();
        a.apply_change(inc.id, &resolve, &alice, now, None, &rules)
            .await
            .unwrap()
            .unwrap();
        for f in a.follow_ups_of(inc.id).await.unwrap() {
            a.backdate_follow_up(f.id, now).await.unwrap();
        }
    }
    let late = chrono::Duration::seconds(60);
    let fire = |db: Db, rules: incident_bot::incident::change::Rules| async move {
        let at = chrono::Utc::now();
        let mut fired = 0;
        for _ in 0..20 {
            fired += db.fire_due_follow_up_reminders(at, &rules, late, 7).await.unwrap();
            fired += db.fire_due_pir_reminders(at, &rules, late, 3).await.unwrap();
        }
        fired
    };
    let (x, y) = tokio::join!(
        tokio::spawn(fire(a.clone(), rules.clone())),
        tokio::spawn(fire(b.clone(), rules.clone()))
    );
    assert_eq!(
        x.unwrap() + y.unwrap(),
        30 + 10,
        "30 follow-ups and 10 reviews, each reminded once"
    );
    let mut reminder_events = 0;
    for n in 1..=10 {
        let inc = a.incident_by_number(IncidentNumber(n)).await.unwrap().unwrap();
        reminder_events += a
            .timeline(inc.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.details["action"] == "reminder")
            .count();
        assert!(inc.pir_remind_at.unwrap() > now, "the next review reminder is planned");
    }
    assert_eq!(reminder_events, 40);
    a.close().await;
    b.close().await;
    if let Some(f) = file {
        let _ = std::fs::remove_file(f);
    }
}

/// Due customer-update reminders (issue 14) fire once even when two replicas fire them at the
/// same moment; private incidents have no customer cadence.
#[tokio::test]
async fn customer_update_reminders_fire_once_across_two_replicas() {
    let (a, b, file) = two_pools().await;
    let table: toml::Table = "[status_page]\ntitle = \"S\"\ncadence = { SEV3 = \"30m\" }\n\
                              [[status_page.components]]\nname = \"Card payments\"\nservices = [\"payments\"]\n"
        .parse()
        .unwrap();
    let page = incident_bot::comms::config::parse_status_page(
        &table["status_page"],
        &["payments".to_string()],
        chrono_tz::UTC,
    )
    .unwrap();
    let mut slas = slas();
    slas.0[2].customer_every = chrono::Duration::minutes(30);
    let now = chrono::Utc::now();
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut new = new_incident(&format!("c{i}"));
        new.is_private = i == 9;
        let DeclareOutcome::Created(inc) = a.declare(&new, &format!("view:c{i}"), now, &slas).await.unwrap() else {
            panic!("declared")
        };
        let due = a.customer_update_due(inc.id).await.unwrap();
        assert_eq!(due.is_some(), i != 9, "a private incident owes customers nothing");
        a.backdate_customer_clock_for_tests(inc.id, now).await.unwrap();
        ids.push(inc.id);
    }
    let late = chrono::Duration::seconds(60);
    let fire = |db: Db, page: incident_bot::comms::StatusPage| async move {
        let at = chrono::Utc::now();
        let mut fired = 0;
        for _ in 0..10 {
            fired += db.fire_due_customer_reminders(at, &page, late, 3).await.unwrap();
        }
        fired
    };
    let (x, y) = tokio::join!(
        tokio::spawn(fire(a.clone(), page.clone())),
        tokio::spawn(fire(b.clone(), page.clone()))
    );
    assert_eq!(x.unwrap() + y.unwrap(), 9, "each public incident reminded once");
    for id in &ids[..9] {
        let reminders = a
            .timeline(*id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "customer" && e.details["action"] == "reminder")
            .count();
        assert_eq!(reminders, 1);
    }
    a.close().await;
    b.close().await;
    if let Some(f) = file {
        let _ = std::fs::remove_file(f);
    }
}

fn alert(fingerprint: &str, status: incident_bot::alerts::AlertStatus) -> incident_bot::alerts::Alert {
    incident_bot::alerts::Alert {
        source: "hooks/bench".into(),
        fingerprint: fingerprint.into(),
        status,
        title: format!("Alert {fingerprint}"),
        severity: Some(Severity::Sev2),
        raw_severity: Some("high".into()),
        service: None,
        labels: Default::default(),
        links: vec![],
        description: String::new(),
        starts_at: None,
    }
}

/// A batch bigger than one statement takes (new groups, look-ups), each group's alerts
/// applied in order, and two replicas writing overlapping batches in opposite orders at once:
/// every alert stored once, no deadlock, counts add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_batches_are_chunked_applied_in_order_and_written_side_by_side() {
    use incident_bot::alerts::{AlertStatus, Intake};
    let (a, b, file) = two_pools().await;
    let sync = posting_every(Duration::from_secs(10));
    let now = chrono::Utc::now();
    // 700 groups, each firing, then firing again, then resolved, in one batch.
    let keys: Vec<String> = (0..700).map(|i| format!("fp-{i:04}")).collect();
    let mut batch = Vec::new();
    for status in [AlertStatus::Firing, AlertStatus::Firing, AlertStatus::Resolved] {
        batch.extend(keys.iter().map(|k| alert(k, status)));
    }
    let done = a.ingest_alerts(&batch, &[], now, sync).await.unwrap();
    assert_eq!(done.len(), 2_100);
    let intakes = |range: std::ops::Range<usize>| {
        let mut seen: Vec<Intake> = done[range].iter().map(|d| d.intake).collect();
        seen.dedup();
        seen
    };
    assert_eq!(intakes(0..700), [Intake::New]);
    assert_eq!(intakes(700..1_400), [Intake::Repeat]);
    assert_eq!(intakes(1_400..2_100), [Intake::Resolve]);
    let first = a.alert(done[0].group).await.unwrap().unwrap();
    assert_eq!((first.fire_count, first.status), (2, AlertStatus::Resolved));
    assert_eq!(
        a.alert_event_kinds(done[0].group).await.unwrap(),
        ["fired", "repeated", "resolved"]
    );

    // Two replicas at once: the same 300 groups, in opposite orders, 10 rounds each.
    let hot: Vec<String> = keys[..300].to_vec();
    let forward: Vec<_> = hot.iter().map(|k| alert(k, AlertStatus::Firing)).collect();
    let backward: Vec<_> = forward.iter().rev().cloned().collect();
    let write = |db: Db, batch: Vec<incident_bot::alerts::Alert>| async move {
        for _ in 0..10 {
            db.ingest_alerts(&batch, &[], chrono::Utc::now(), sync).await.unwrap();
        }
    };
    tokio::join!(write(a.clone(), forward), write(b.clone(), backward));
    // Each hot group: 2 fires above, then a flap (it had just resolved), then 19 repeats.
    let hot_group = a.alert_by_fingerprint("hooks/bench", "fp-0000").await.unwrap().unwrap();
    assert_eq!((hot_group.fire_count, hot_group.flaps), (22, 1));
    let kinds = a.alert_event_kinds(hot_group.id).await.unwrap();
    assert_eq!(kinds.len(), 3 + 20);
    let cold = a.alert_by_fingerprint("hooks/bench", "fp-0699").await.unwrap().unwrap();
    assert_eq!(cold.fire_count, 2);
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
}

/// While a group is silenced its message does not change: repeats that arrive while the
/// silence's own update is under way do not make that sync follow up (the message would show
/// them, silenced), and a new episode is posted when the silence ends, not never.
#[tokio::test]
async fn a_silence_holds_repeats_and_a_new_episode_back_until_it_ends() {
    use incident_bot::alerts::{AlertStatus, Intake};
    let (db, _other, file) = two_pools().await;
    let gap = Duration::from_secs(10);
    let sync = posting_every(gap);
    let t0 = chrono::Utc::now();
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let fired = db
        .ingest_alerts(&[alert("s-1", AlertStatus::Firing)], &[], t0, sync)
        .await
        .unwrap();
    let id = fired[0].group;
    db.alert_synced(id, 1, "C0ALERTS", "1.000001", t0, gap).await.unwrap();
    let until = at(2 * 3_600_000);
    let due_at_the_end = Some(until.timestamp_millis());
    let next_sync = || async { db.next_alert_sync().await.unwrap().map(|t| t.timestamp_millis()) };
    assert_eq!(
        db.triage_alert(id, "U0CAROL", Some(until), "silence:s-1", t0, sync)
            .await
            .unwrap(),
        Some(true)
    );
    // The poster takes the silenced version; two repeats land before its update is answered.
    let shown = db.alert(id).await.unwrap().unwrap();
    let twice = [alert("s-1", AlertStatus::Firing), alert("s-1", AlertStatus::Firing)];
    let repeats = db.ingest_alerts(&twice, &[], at(1_000), sync).await.unwrap();
    assert!(repeats.iter().all(|r| r.intake == Intake::Repeat));
    db.alert_synced(id, shown.version, "C0ALERTS", "1.000001", at(1_100), gap)
        .await
        .unwrap();
    assert_eq!(
        next_sync().await,
        due_at_the_end,
        "the next sync is the silence's end, not a gap later"
    );
    assert_eq!(
        db.alert(id).await.unwrap().unwrap().fire_count,
        3,
        "the repeats are counted"
    );
    // Resolved, and firing again an hour later, still silenced: a new episode, posted when
    // the silence ends.
    let resolved = db
        .ingest_alerts(&[alert("s-1", AlertStatus::Resolved)], &[], at(2_000), sync)
        .await
        .unwrap();
    assert_eq!(resolved[0].intake, Intake::Resolve);
    let again = db
        .ingest_alerts(&[alert("s-1", AlertStatus::Firing)], &[], at(3_600_000), sync)
        .await
        .unwrap();
    assert_eq!(again[0].intake, Intake::Reopen);
    let group = db.alert(id).await.unwrap().unwrap();
    assert_eq!((group.episode, group.message_ts.as_deref()), (2, None));
    assert_eq!(
        next_sync().await,
        due_at_the_end,
        "the new episode's message waits for the silence's end"
    );
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
}

/// "Link to incident" reads the group before it writes; the poster may post the group's
/// message in between. The link's own update must still be scheduled, or the message never
/// says "Linked to INC-1".
#[tokio::test]
async fn a_link_read_before_the_post_landed_still_updates_the_message() {
    use incident_bot::alerts::AlertStatus;
    let (db, _other, file) = two_pools().await;
    let gap = Duration::from_millis(50);
    let sync = posting_every(gap);
    let now = chrono::Utc::now();
    let fired = db
        .ingest_alerts(&[alert("l-1", AlertStatus::Firing)], &[], now, sync)
        .await
        .unwrap();
    let id = fired[0].group;
    let read_by_the_link = db.alert(id).await.unwrap().unwrap();
    assert_eq!(
        read_by_the_link.message_ts, None,
        "not posted yet when the link reads it"
    );
    db.alert_synced(id, read_by_the_link.version, "C0ALERTS", "1.000001", now, gap)
        .await
        .unwrap();
    assert_eq!(db.next_alert_sync().await.unwrap(), None, "posted: nothing more to do");
    let incident = match db
        .declare(&new_incident("Checkout errors"), "view:link", now, &slas())
        .await
        .unwrap()
    {
        DeclareOutcome::Created(i) | DeclareOutcome::Duplicate(i) => i,
    };
    assert!(db
        .link_alert(&read_by_the_link, incident.id, "U0BOB", false, now, sync)
        .await
        .unwrap());
    assert!(
        db.next_alert_sync().await.unwrap().is_some(),
        "the posted message is updated to show the link"
    );
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
}

/// A person's change (an envelope handler, on the main runtime) waits on SQLite for the
/// transaction under way and at most one background writer, not for every outbox job queued
/// before it; PostgreSQL needs no turn (its row locks queue writers).
#[tokio::test]
async fn a_persons_write_waits_for_at_most_one_background_writer() {
    let (db, _other, file) = two_pools().await;
    if db.is_postgres() {
        assert!(db.writer().await.is_none());
        return;
    }
    let background = incident_bot::background::Background::start().unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = db.writer().await.expect("SQLite has a write turn");
    let mut queued = Vec::new();
    for n in 0..4 {
        let (db, order) = (db.clone(), order.clone());
        queued.push(background.spawn(async move {
            let _turn = db.writer().await;
            order.lock().unwrap().push(format!("background {n}"));
        }));
        // Each in line before the next (and before the person below).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let person = {
        let (db, order) = (db.clone(), order.clone());
        tokio::spawn(async move {
            let _turn = db.writer().await;
            order.lock().unwrap().push("person".to_string());
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(order.lock().unwrap().is_empty(), "nobody writes while the turn is held");
    drop(held);
    person.await.unwrap();
    for q in queued {
        q.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 5);
    let person_at = order.iter().position(|w| w == "person").unwrap();
    assert!(
        person_at <= 1,
        "the person waited behind {person_at} background writers: {order:?}"
    );
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
}

/// The outbox's claims and lease renewals are single statements outside a transaction; on
/// SQLite they take the write turn as well, so they never hold the file's lock while a
/// person's transaction sleeps in the busy handler.
#[tokio::test]
async fn single_statement_writes_wait_for_the_write_turn() {
    let (db, _other, file) = two_pools().await;
    let Some(held) = db.writer().await else { return };
    let now = chrono::Utc::now();
    let claim = {
        let db = db.clone();
        tokio::spawn(async move { db.claim_jobs("replica-a", now, Duration::from_secs(30), 10).await })
    };
    let renew = {
        let db = db.clone();
        tokio::spawn(async move { db.renew_leases("replica-a", now).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !claim.is_finished() && !renew.is_finished(),
        "a claim or a lease renewal wrote while another writer had the turn"
    );
    drop(held);
    assert!(claim.await.unwrap().unwrap().is_empty());
    assert_eq!(renew.await.unwrap().unwrap(), 0);
    if let Some(file) = file {
        let _ = std::fs::remove_file(file);
    }
}

/// SQLite's write-ahead log is copied into the database file by the bot's background lane, not
/// by whichever commit crosses SQLite's default 1,000 pages (a checkpoint fsyncs twice: inside
/// a person's change, or before an alert's 202, that was the latency tail). Commits checkpoint
/// only past the backstop, and the running bot brings the database file up to date within
/// seconds. PostgreSQL checkpoints in its own processes: nothing to test there.
#[tokio::test]
async fn the_bot_checkpoints_sqlites_log_off_the_writers_path() {
    if common::database().is_some() {
        return;
    }
    let stack = common::stack().await;
    let Db::Sqlite(pool) = &stack.db else {
        unreachable!("the stack runs on SQLite when TEST_DATABASE_URL is unset")
    };
    let backstop: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        backstop, 10_000,
        "commits must not checkpoint at SQLite's default 1,000 pages"
    );
    common::declared(&stack, "Checkpointed", "SEV3").await;

    let file = pool.connect_options().get_filename().to_path_buf();
    let checkpointed = incident_bot::demo::wait_for(Duration::from_secs(5), || async {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(pool).await.ok()?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await.ok()?;
        let on_disk = std::fs::metadata(&file).ok()?.len() as i64;
        (on_disk == pages * page_size).then_some(on_disk)
    })
    .await;
    assert!(
        checkpointed.is_some(),
        "the database file never caught up with its log: nothing checkpointed it"
    );
}
