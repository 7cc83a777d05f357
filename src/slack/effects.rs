//! Performs outbox jobs against Slack: create the channel, invite, set the topic, post and pin
//! the card, announce, confirm to the declarer. Each job is one idempotent step; what it
//! learns (channel id, message ts) is stored when the job completes.

use super::blocks;
use super::web::{Failure, MessageTag, SlackCallError, SlackWeb, JOB_EVENT_TYPE};
use crate::config::Policy;
use crate::db::{Db, JobUpdate, NewJob};
use crate::incident::change::Notice;
use crate::incident::model::*;
use crate::outbox::{Job, JobKind, Outcome, Runner};
use serde_json::json;
use slack_morphism::prelude::SlackMessageContent;

/// How many `-2`, `-3`, … suffixes we try after `name_taken` before giving up.
const MAX_NAME_ATTEMPTS: u32 = 50;

/// `conversations.invite` refusals that concern one person only: said once, never retried.
const PERSON_REFUSALS: &[&str] = &[
    "user_is_restricted",
    "ura_max_channels",
    "org_user_not_in_team",
    "no_external_invite_permission",
    "cant_invite",
    "user_not_found",
    "user_is_deactivated",
    "invitee_cant_see_channel",
    "cant_invite_self",
];

/// A failed call as the job's outcome: failed for good, try again, or unknown (reconcile first).
pub(super) fn outcome_of(e: SlackCallError) -> Outcome {
    match e.failure() {
        Failure::Permanent => Outcome::GiveUp { error: e.to_string() },
        Failure::Temporary { retry_after } => Outcome::Retry {
            after: retry_after,
            error: e.to_string(),
        },
        Failure::Uncertain => Outcome::Uncertain { error: e.to_string() },
    }
}

/// `content` tagged with the job that posts it (Slack message metadata), so that a retry after
/// an uncertain outcome can find it in the channel's history instead of posting it again.
fn tagged(content: SlackMessageContent, job: &Job) -> SlackMessageContent {
    let tag = MessageTag {
        event_type: JOB_EVENT_TYPE,
        key: "job",
        value: job.id.to_string(),
    };
    tag.apply(content, &[("incident", job.incident_id.0.to_string())])
}

/// The incident's tag in its channel's purpose: the bot adopts a channel it finds by name only
/// when it made it for this incident (id and declaration time, unique even across a database
/// that was reset and numbers incidents from 1 again).
fn purpose_tag(incident: &Incident) -> String {
    format!(
        "incident-bot:{}:{}",
        incident.id.0,
        incident.declared_at.timestamp_millis()
    )
}

fn purpose(incident: &Incident) -> String {
    let title: String = incident.title.chars().take(150).collect();
    format!("{} {} · {}", incident.number, title, purpose_tag(incident))
}

/// Counts a posted follow-up or review reminder (`kind`) in the metrics.
fn count_reminder(kind: &str, job: &Job) {
    let late = if job.payload["late"] == true { "true" } else { "false" };
    crate::metrics::METRICS.follow_up_reminders.inc(&[kind, late]);
}

/// Runs outbox jobs with the bot's Slack client.
pub struct SlackEffects {
    pub db: Db,
    pub web: SlackWeb,
    pub policy: Policy,
    pub bot_user_id: String,
}

impl SlackEffects {
    async fn step(&self, job: &Job, incident: &Incident) -> Result<JobUpdate, Outcome> {
        let channel = incident.channel_id.clone().unwrap_or_default();
        let need_channel = || Outcome::GiveUp {
            error: format!("{} has no channel yet", incident.number),
        };
        match job.kind {
            JobKind::CreateChannel => self.create_channel(job, incident).await,
            JobKind::InviteMembers => {
                if channel.is_empty() {
                    return Err(need_channel());
                }
                let mut users = vec![incident.declared_by.to_string()];
                if incident.spoc != incident.declared_by {
                    users.push(incident.spoc.to_string());
                }
                self.invite_people(incident, &channel, users).await
            }
            JobKind::SetTopic => {
                // Tier 2 (about 20 a minute per workspace), and every call posts "set the
                // channel topic" in the channel: only when our text differs from what is set.
                let topic = blocks::topic(incident);
                let current = self.web.topic(&channel).await.map_err(outcome_of)?;
                if current != topic {
                    self.web.set_topic_once(&channel, &topic).await.map_err(outcome_of)?;
                }
                Ok(JobUpdate::default())
            }
            JobKind::PostCard => {
                let content = self.card(incident).await;
                let ts = self.post_once(job, &channel, content, None).await?;
                Ok(JobUpdate {
                    card_ts: Some(ts),
                    then: vec![NewJob::new(JobKind::PinCard)],
                    ..JobUpdate::default()
                })
            }
            JobKind::PinCard => {
                let ts = incident.card_ts.as_deref().ok_or_else(|| Outcome::GiveUp {
                    error: "no card to pin".into(),
                })?;
                self.web.pin(&channel, ts).await.map_err(outcome_of)?;
                Ok(JobUpdate::default())
            }
            JobKind::Announce => {
                let Some(announce) = self.policy.announce_channel.as_deref().filter(|_| !incident.is_private) else {
                    // Private incidents are never announced (checked again here, not only when enqueued).
                    return Ok(JobUpdate::default());
                };
                let content = blocks::content(
                    &blocks::summary_text(incident),
                    blocks::announcement(incident, &channel),
                );
                let ts = self.post_once(job, announce, content, None).await?;
                Ok(JobUpdate {
                    announce_ts: Some(ts),
                    event: Some((EventKind::Announced, json!({ "channel": announce }))),
                    ..JobUpdate::default()
                })
            }
            JobKind::RefreshCard => {
                let Some(ts) = incident.card_ts.as_deref() else {
                    return Ok(JobUpdate::default());
                };
                let content = self.card(incident).await;
                // The topic follows as its own job, after the notices this change queued: a
                // rate-limited topic never holds up what people are waiting for.
                let then = vec![NewJob::new(JobKind::SetTopic)];
                match self.web.update(&channel, ts, content.clone()).await {
                    Ok(()) => Ok(JobUpdate {
                        then,
                        ..JobUpdate::default()
                    }),
                    // Someone deleted the card (or Slack no longer lets us edit it): post it
                    // again and pin the new one, so the channel keeps a live summary.
                    Err(e) if matches!(e.code(), Some("message_not_found" | "cant_update_message")) => {
                        tracing::info!(incident = %incident.number, "the summary card is gone; posting it again");
                        let ts = self.web.post(&channel, content, None).await.map_err(outcome_of)?;
                        let mut then = then;
                        then.insert(0, NewJob::new(JobKind::PinCard));
                        Ok(JobUpdate {
                            card_ts: Some(ts),
                            then,
                            ..JobUpdate::default()
                        })
                    }
                    Err(e) => Err(outcome_of(e)),
                }
            }
            JobKind::PostNotice => {
                let notice: Notice =
                    serde_json::from_value(job.payload["notice"].clone()).map_err(|e| Outcome::GiveUp {
                        error: format!("unreadable notice: {e}"),
                    })?;
                let actor = job.payload["actor"].as_str().unwrap_or("someone");
                let text = blocks::notice_text(incident, actor, &notice);
                if job.payload["to"] == "thread" {
                    self.post_in_thread(job, incident, &text).await?;
                } else {
                    self.post_once(job, &channel, blocks::text(&text), None).await?;
                }
                Ok(JobUpdate::default())
            }
            JobKind::Remind => {
                let repeat = job.payload["stage"] == "repeat";
                let late = job.payload["late"] == true;
                let (text, blocks) = blocks::reminder(incident, &self.policy, repeat, late);
                self.post_once(job, &channel, blocks::content(&text, blocks), None)
                    .await?;
                let stage = if repeat { "repeat" } else { "first" };
                crate::metrics::METRICS
                    .reminders_sent
                    .inc(&[stage, if late { "true" } else { "false" }]);
                Ok(JobUpdate::default())
            }
            JobKind::Escalate => {
                let overdue = chrono::Duration::milliseconds(job.payload["overdue_ms"].as_i64().unwrap_or_default());
                let text = blocks::escalation(incident, &self.policy, overdue);
                if job.payload["to"] == "thread" {
                    self.post_in_thread(job, incident, &text).await?;
                } else {
                    self.post_once(job, &channel, blocks::text(&text), None).await?;
                    // One breach, escalated in the channel and (for public incidents) the thread:
                    // counted once, on the channel post.
                    crate::metrics::METRICS.breaches.inc(&[]);
                }
                Ok(JobUpdate::default())
            }
            JobKind::RemindFollowUp => {
                let id = job.payload["follow_up"].as_i64().unwrap_or_default();
                let follow_up = self.db.follow_up(id).await.map_err(|e| Outcome::Retry {
                    error: format!("cannot load follow-up: {e}"),
                    after: None,
                })?;
                // Closed since the reminder was planned: nothing to say.
                let Some(f) = follow_up.filter(|f| f.state == crate::incident::followup::FollowUpState::Open) else {
                    return Ok(JobUpdate::default());
                };
                let (text, blocks) = blocks::follow_up_reminder(&f, job.payload["late"] == true);
                let content = blocks::content(&text, blocks);
                // A DM to the owner; the incident channel when a DM is not possible (Slack said
                // no) or there is nobody to DM.
                let sent_dm = match &f.owner {
                    None => false,
                    // The earlier attempt may be in the DM: find the DM (`conversations.open`)
                    // and look in its history before posting again, like any other post.
                    Some(owner) if job.uncertain => match self.web.open_dm(owner.as_str()).await {
                        Ok(dm) => {
                            self.post_once(job, &dm, content.clone(), None).await?;
                            true
                        }
                        Err(e) if e.code().is_some() && !channel.is_empty() => false,
                        Err(e) => return Err(outcome_of(e)),
                    },
                    Some(owner) => match self.web.post(owner.as_str(), tagged(content.clone(), job), None).await {
                        Ok(_) => true,
                        Err(e) if e.code().is_some() && !channel.is_empty() => false,
                        Err(e) => return Err(outcome_of(e)),
                    },
                };
                if !sent_dm {
                    self.post_once(job, &channel, content, None).await?;
                }
                count_reminder("follow_up", job);
                Ok(JobUpdate::default())
            }
            JobKind::Vendor => super::vendors::run_job(self, job, incident).await,
            JobKind::Customer => super::comms::run_job(self, job, incident).await,
            JobKind::RemindPir => {
                // Marked done since the reminder was planned: nothing to say.
                if incident.pir_done_at.is_some() {
                    return Ok(JobUpdate::default());
                }
                let (text, blocks) = blocks::pir_reminder(incident, job.payload["late"] == true);
                self.post_once(job, &channel, blocks::content(&text, blocks), None)
                    .await?;
                count_reminder("review", job);
                Ok(JobUpdate::default())
            }
            JobKind::InviteUsers => {
                let users: Vec<String> = job.payload["users"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str())
                    .map(str::to_string)
                    .collect();
                self.invite_people(incident, &channel, users).await
            }
            JobKind::ConfirmDeclarer => {
                let text = format!(
                    "✅ {} declared ({}): <#{}>. You are {}.",
                    incident.number,
                    incident.severity,
                    channel,
                    if incident.spoc == incident.declared_by {
                        "the SPOC".to_string()
                    } else {
                        format!("the declarer; <@{}> is the SPOC", incident.spoc)
                    }
                );
                self.tell_declarer(incident, &text).await.map_err(outcome_of)?;
                Ok(JobUpdate::default())
            }
        }
    }

    /// The pinned summary card, as posted and as refreshed after each change.
    async fn card(&self, incident: &Incident) -> SlackMessageContent {
        let mut card = blocks::summary_card(incident, &self.policy);
        super::vendors::add_waiting_on(&self.db, incident, &mut card).await;
        // Issue 12: how many changes may have caused it (a failed count only omits the line).
        if let Ok((correlated, linked)) = self.db.change_counts(incident.id).await {
            if let (Some(line), Some(list)) = (super::calendar::card_block(correlated, linked), card.as_array_mut()) {
                let at = list.len().saturating_sub(1);
                list.insert(at, line);
            }
        }
        blocks::content(&blocks::summary_text(incident), card)
    }

    /// Posts in the announcement thread, where stakeholders follow the incident. Private
    /// incidents, and setups without an announcement channel, have no thread: nothing is posted.
    async fn post_in_thread(&self, job: &Job, incident: &Incident, text: &str) -> Result<(), Outcome> {
        let Some(announce) = self.policy.announce_channel.as_deref() else {
            return Ok(());
        };
        if incident.is_private {
            return Ok(());
        }
        let Some(ts) = incident.announce_ts.as_deref() else {
            return match self.db.announcement_pending(incident.id).await {
                // Still being retried: wait for its thread rather than drop the notice.
                Ok(true) => Err(Outcome::Retry {
                    error: format!("{} is not announced yet", incident.number),
                    after: None,
                }),
                // Never announced (declared before an announcement channel was set), or the
                // announcement failed for good (recorded on the timeline): no thread to post in.
                Ok(false) => Ok(()),
                Err(e) => Err(Outcome::Retry {
                    error: format!("cannot read the announcement's state: {e}"),
                    after: None,
                }),
            };
        };
        self.post_once(job, announce, blocks::text(text), Some(ts))
            .await
            .map(|_| ())
    }

    /// Posts `content` for `job` (tagged with it) and returns the message's ts. After an
    /// uncertain outcome it first looks for the message an earlier attempt may have posted and
    /// adopts it; only when none is found is the message posted again.
    pub(super) async fn post_once(
        &self,
        job: &Job,
        channel: &str,
        content: SlackMessageContent,
        thread_ts: Option<&str>,
    ) -> Result<String, Outcome> {
        if job.uncertain {
            match self
                .web
                .find_job_message(channel, thread_ts, job.id, job.created_at, &self.bot_user_id)
                .await
            {
                Ok(Some(ts)) => {
                    tracing::info!(job = job.id, %ts, "reconciled: the earlier attempt was posted; adopting it");
                    return Ok(ts);
                }
                Ok(None) => tracing::info!(job = job.id, "reconciled: no earlier post found; posting"),
                // Cannot look (e.g. no history scope there): posting again is the lesser evil.
                Err(e) if e.failure() == Failure::Permanent => {
                    tracing::warn!(job = job.id, error = %e, "cannot look for an earlier attempt; posting again");
                }
                // Still not knowing: stay uncertain and look again next time.
                Err(e) => return Err(Outcome::Uncertain { error: e.to_string() }),
            }
        }
        self.web
            .post(channel, tagged(content, job), thread_ts)
            .await
            .map_err(outcome_of)
    }

    /// Creates `inc-<n>-<slug>`, moving on to `-2`, `-3`, … while Slack says `name_taken` for a
    /// channel that is not this incident's. A taken name is looked up first: a channel the bot
    /// created for this incident (an earlier attempt whose answer was lost, or a crash before it
    /// was stored) is adopted instead of making an orphan next to it.
    async fn create_channel(&self, job: &Job, incident: &Incident) -> Result<JobUpdate, Outcome> {
        if let (Some(id), Some(name)) = (&incident.channel_id, &incident.channel_name) {
            return Ok(self.after_channel(incident, id.clone(), name.clone()));
        }
        for attempt in 1..=MAX_NAME_ATTEMPTS {
            let name = channel_name(&self.policy.channel_prefix, incident.number, &incident.title, attempt);
            match self.web.create_channel(&name, incident.is_private).await {
                Ok(id) => {
                    self.tag_channel(incident, &id).await;
                    return Ok(self.after_channel(incident, id, name));
                }
                Err(e) if e.code() == Some("name_taken") => {
                    let found = self.web.find_channel(&name).await.map_err(|e| match outcome_of(e) {
                        // Not knowing whether it is ours must not end in a `-2`: look again later.
                        Outcome::Retry { error, .. } => Outcome::Uncertain { error },
                        other => other,
                    })?;
                    if let Some(found) = found.filter(|c| self.made_for(job, incident, c)) {
                        tracing::info!(channel = %found.id, %name, "reconciled: adopting the channel an earlier attempt created");
                        if found.purpose.is_empty() {
                            self.tag_channel(incident, &found.id).await;
                        }
                        return Ok(self.after_channel(incident, found.id, name));
                    }
                }
                Err(e) => return Err(outcome_of(e)),
            }
        }
        Err(Outcome::GiveUp {
            error: format!("every channel name up to -{MAX_NAME_ATTEMPTS} is taken"),
        })
    }

    /// Whether `channel` (found by this incident's channel name) is one the bot created for
    /// it: the bot is its creator and its purpose carries the incident's tag; or, after an
    /// uncertain attempt (the bot may have died between creating it and setting the purpose),
    /// its purpose is still empty and it was created after the incident was declared. A channel
    /// that merely has the name (made by someone, or by the bot for a database since reset) is
    /// never adopted.
    fn made_for(&self, job: &Job, incident: &Incident, channel: &super::web::FoundChannel) -> bool {
        if channel.creator != self.bot_user_id {
            return false;
        }
        if channel.purpose.contains(&purpose_tag(incident)) {
            return true;
        }
        job.uncertain && channel.purpose.is_empty() && channel.created >= incident.declared_at.timestamp()
    }

    /// Sets the purpose that identifies the channel as this incident's. Best effort: a channel
    /// without it is still used, and adopted by name if its creation has to be reconciled.
    async fn tag_channel(&self, incident: &Incident, channel: &str) {
        if let Err(e) = self.web.set_purpose(channel, &purpose(incident)).await {
            tracing::warn!(%channel, error = %e, "cannot set the incident channel's purpose");
        }
    }

    fn after_channel(&self, incident: &Incident, id: String, name: String) -> JobUpdate {
        let mut then = vec![
            NewJob::new(JobKind::InviteMembers),
            NewJob::new(JobKind::PostCard),
            NewJob::new(JobKind::ConfirmDeclarer),
        ];
        if self.policy.announce_channel.is_some() && !incident.is_private {
            then.push(NewJob::new(JobKind::Announce));
        }
        // Last in the incident's queue: a Tier 2 call that must never delay the card or the
        // stakeholders' announcement.
        then.push(NewJob::new(JobKind::SetTopic));
        JobUpdate {
            event: Some((EventKind::ChannelCreated, json!({ "channel": id, "name": name }))),
            channel: Some((id, name)),
            then,
            ..JobUpdate::default()
        }
    }

    /// Invites each person with a call of their own, so one refusal (a guest, another
    /// workspace, a deactivated account) never keeps the others out. Refusals no retry can fix
    /// are said in the channel (and to the declarer when they could not be added themselves)
    /// and kept on the timeline; the job is retried only for what may still succeed (Slack
    /// unavailable), and re-inviting those already added is harmless (`already_in_channel`).
    async fn invite_people(
        &self,
        incident: &Incident,
        channel: &str,
        mut users: Vec<String>,
    ) -> Result<JobUpdate, Outcome> {
        if channel.is_empty() {
            return Err(Outcome::GiveUp {
                error: format!("{} has no channel yet", incident.number),
            });
        }
        users.retain(|u| *u != self.bot_user_id);
        users.dedup();
        let mut refused: Vec<(String, String)> = Vec::new();
        let mut retry: Option<Outcome> = None;
        for user in users {
            match self.web.invite_person(channel, &user).await {
                Ok(()) => {}
                Err(e) => match e.code() {
                    Some(code) if PERSON_REFUSALS.contains(&code) => refused.push((user, code.to_string())),
                    // The channel itself is the problem (archived, gone, no scope): no person
                    // can be added; the job fails for good with Slack's reason.
                    _ if e.failure() == Failure::Permanent => return Err(outcome_of(e)),
                    _ => retry = retry.or(Some(outcome_of(e))),
                },
            }
        }
        if !refused.is_empty() {
            let text = blocks::invite_refusals(&refused);
            self.web
                .post(channel, blocks::text(&text), None)
                .await
                .map_err(outcome_of)?;
            if refused.iter().any(|(u, _)| u == incident.declared_by.as_str()) {
                if let Err(e) = self.tell_declarer(incident, &text).await {
                    tracing::warn!(incident = %incident.number, error = %e, "cannot tell the declarer about a refused invite");
                }
            }
        }
        if let Some(outcome) = retry {
            return Err(outcome);
        }
        let event = (!refused.is_empty()).then(|| {
            let people: Vec<serde_json::Value> = refused
                .iter()
                .map(|(user, error)| json!({ "user": user, "error": error }))
                .collect();
            (
                EventKind::SideEffectFailed,
                json!({ "step": "invite", "refused": people }),
            )
        });
        Ok(JobUpdate {
            event,
            ..JobUpdate::default()
        })
    }

    /// Ephemeral in the channel where they typed `/incident`; a DM when that is not possible.
    async fn tell_declarer(&self, incident: &Incident, text: &str) -> Result<(), SlackCallError> {
        let user = incident.declared_by.as_str();
        if let Some(origin) = incident.origin_channel.as_deref() {
            match self.web.post_ephemeral(origin, user, blocks::text(text)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.code().is_some() => {} // not in that channel, DM: fall back to a DM
                Err(e) => return Err(e),
            }
        }
        self.web.post(user, blocks::text(text), None).await.map(|_| ())
    }
}

impl Runner for SlackEffects {
    async fn run(&self, job: Job) -> Outcome {
        let incident = match self.db.incident(job.incident_id).await {
            Ok(i) => {
                tracing::Span::current().record("incident", tracing::field::display(&i.number));
                i
            }
            Err(e) => {
                return Outcome::Retry {
                    error: format!("cannot load incident: {e}"),
                    after: None,
                }
            }
        };
        match self.step(&job, &incident).await {
            Ok(update) => Outcome::Done(update),
            Err(outcome) => outcome,
        }
    }

    async fn report_delay(&self, job: Job, error: String) {
        // One notice per incident: the declarer needs to know, not to be spammed.
        let key = format!("delay-notice:{}", job.incident_id.0);
        let Ok(incident) = self.db.incident(job.incident_id).await else {
            return;
        };
        if !self.db.first_time(&key, chrono::Utc::now()).await.unwrap_or(false) {
            return;
        }
        let text = format!(
            "⚠️ {} is saved, but {} is delayed ({error}). I keep retrying; nothing is lost.",
            incident.number,
            job.kind.describe()
        );
        if let Err(e) = self.tell_declarer(&incident, &text).await {
            tracing::warn!(incident = %incident.number, error = %e, "cannot tell the declarer about a delay");
        }
    }

    async fn report_failure(&self, job: Job, error: String) {
        // Once per job: what failed for good, and that it will not be retried.
        let key = format!("failure-notice:{}", job.id);
        let Ok(incident) = self.db.incident(job.incident_id).await else {
            return;
        };
        if !self.db.first_time(&key, chrono::Utc::now()).await.unwrap_or(false) {
            return;
        }
        let text = format!(
            "❌ {} is saved, but {} failed for good ({error}). I will not retry it; the incident's timeline records it.",
            incident.number,
            job.kind.describe()
        );
        if let Err(e) = self.tell_declarer(&incident, &text).await {
            tracing::warn!(incident = %incident.number, error = %e, "cannot tell the declarer about a failure");
        }
    }
}
