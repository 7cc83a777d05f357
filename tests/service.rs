//! The application layer without Slack: the use-cases called directly, as the CLI and the
//! HTTP endpoints call them, with a stand-in for what Slack knows about people.

mod common;

use futures_util::future::BoxFuture;
use incident_bot::db::{Db, DeclareOutcome};
use incident_bot::demo::demo_policy;
use incident_bot::incident::change::Change;
use incident_bot::incident::model::*;
use incident_bot::service::{FollowUpRequest, FollowUpScope, People, Refusal, Service};
use std::sync::Arc;
use tokio::sync::Notify;

/// Alice and Bob are people; anyone else is unknown.
struct Directory;

impl People for Directory {
    fn check_person<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, anyhow::Result<Result<String, String>>> {
        Box::pin(async move {
            Ok(match user.as_str() {
                "U0ALICE" => Ok("alice".into()),
                "U0BOB" => Ok("bob".into()),
                other => Err(format!("<@{other}> is not a person in this workspace.")),
            })
        })
    }

    fn channel_members<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async move { Ok(vec!["U0ALICE".to_string()]) })
    }
}

async fn service() -> (Service, Option<tempfile::TempDir>) {
    let (db, dir) = match common::database() {
        Some((url, schema)) => (Db::connect_with(&url, Some(&schema)).await.unwrap(), None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("service.db").display());
            (Db::connect(&url).await.unwrap(), Some(dir))
        }
    };
    let service = Service::new(
        db,
        demo_policy(),
        Arc::new(Directory),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    (service, dir)
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn declaration(title: &str, private: bool) -> NewIncident {
    NewIncident {
        title: Title::parse(title).unwrap(),
        severity: Severity::Sev2,
        services: vec!["payments".into()],
        description: String::new(),
        spoc: user("U0ALICE"),
        declared_by: user("U0ALICE"),
        is_private: private,
        origin_channel: None,
    }
}

#[tokio::test]
async fn use_cases_run_without_slack() {
    let (service, _dir) = service().await;
    let alice = user("U0ALICE");
    let carol = user("U0CAROL");

    // Declared once per key: the same form submitted twice finds the first incident.
    let first = service
        .declare(&declaration("Card auth down", false), "view:V1")
        .await
        .unwrap();
    let DeclareOutcome::Created(public) = first else {
        panic!("declared")
    };
    let again = service
        .declare(&declaration("Card auth down", false), "view:V1")
        .await
        .unwrap();
    assert!(matches!(again, DeclareOutcome::Duplicate(i) if i.id == public.id));
    let Ok(DeclareOutcome::Created(private)) = service.declare(&declaration("Fraud rule leak", true), "view:V2").await
    else {
        panic!("declared")
    };

    // A change applies once per key; the lifecycle's refusals come back as rules.
    let note = Change::Note {
        text: "card issuer confirms".into(),
        link: None,
    };
    assert!(service
        .apply(public.id, &note, &alice, "trigger:1")
        .await
        .unwrap()
        .is_some());
    assert!(service
        .apply(public.id, &note, &alice, "trigger:1")
        .await
        .unwrap()
        .is_none());
    let kinds: Vec<String> = service
        .timeline(public.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "note").count(), 1, "{kinds:?}");
    match service.apply(public.id, &Change::Reopen, &alice, "trigger:2").await {
        Err(Refusal::Rule(why)) => assert!(why.contains("reopen") || why.contains("open"), "{why}"),
        other => panic!("reopening an open incident: {other:?}"),
    }

    // The private incident is listed for its SPOC, counted but not named for anyone else.
    let for_alice = service.active_incidents(&alice).await.unwrap();
    assert_eq!(for_alice.visible.len(), 2);
    assert_eq!(for_alice.hidden, 0);
    let for_carol = service.active_incidents(&carol).await.unwrap();
    assert_eq!(
        for_carol.visible.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![public.id]
    );
    assert_eq!(for_carol.hidden, 1);

    // Follow-up owners must be people; a known one is accepted.
    let request = |owner: &str| FollowUpRequest {
        text: "Add a canary for card auth".into(),
        owner: Some(user(owner)),
        due: None,
        link: None,
    };
    match service.new_follow_up(request("U0CAROL")).await {
        Err(Refusal::Rule(why)) => assert!(why.contains("not a person"), "{why}"),
        other => panic!("an unknown owner: {other:?}"),
    }
    let item = service.new_follow_up(request("U0BOB")).await.unwrap();
    let add = Change::AddFollowUps(vec![item]);
    service.apply(private.id, &add, &alice, "trigger:3").await.unwrap();

    // Listed elsewhere than the incident channel: hidden from Carol, shown to Alice.
    let mine = service.follow_ups("C0GENERAL", &alice).await.unwrap();
    assert_eq!(mine.scope, FollowUpScope::Open);
    assert_eq!((mine.items.visible.len(), mine.items.hidden), (1, 0));
    let theirs = service.follow_ups("C0GENERAL", &carol).await.unwrap();
    assert_eq!((theirs.items.visible.len(), theirs.items.hidden), (0, 1));

    // Closing by number: the first close is new, the same request again is not.
    let incident = service.incident(private.id).await.unwrap();
    let done = incident_bot::incident::followup::FollowUpState::Done;
    let closed = service
        .close_follow_up_seq(&incident, 1, done, &alice, "trigger:4")
        .await
        .unwrap();
    assert!(closed.just_now);
    let repeated = service
        .close_follow_up_seq(&incident, 1, done, &alice, "trigger:4")
        .await
        .unwrap();
    assert!(!repeated.just_now);
    assert!(matches!(
        service.close_follow_up_seq(&incident, 9, done, &alice, "trigger:5").await,
        Err(Refusal::Rule(why)) if why.contains("no follow-up #9")
    ));

    // The review draft is written from the same record the CLI export reads, with names.
    let (record, markdown) = service.review_draft(private.id).await.unwrap();
    assert_eq!(record.incident.id, private.id);
    assert!(markdown.contains("@alice"), "{markdown}");
}
