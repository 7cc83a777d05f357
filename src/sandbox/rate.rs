//! Slack's rate-limit tiers, enforced when a test turns them on ([`super::Sandbox::set_rate_tiers`]).
//!
//! Why: with tiers off, nothing tells us whether a burst of incidents still gets its channels,
//! cards and announcements once Slack starts answering 429. Slack limits each method per
//! workspace by tier (Tier 1 ≈ 1/min, Tier 2 ≈ 20/min, Tier 3 ≈ 50/min, Tier 4 ≈ 100/min) and
//! `chat.postMessage` to about one message per second per channel; the tier of each method is
//! the `rate_limits` field of its page in `../shared/slack/methods/` (`t5` is Slack's "special"
//! tier: only `chat.postMessage` is limited here, per channel). Over the limit Slack answers
//! HTTP 429 with `Retry-After: <seconds>` until a slot frees up, which is what [`Limiter::admit`]
//! computes from a sliding window of the calls it let through.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The tier of each method the sandbox serves (from `methods/<method>.json` `rate_limits`).
pub(crate) fn tier(method: &str) -> Option<u8> {
    Some(match method {
        "conversations.create"
        | "conversations.setTopic"
        | "conversations.setPurpose"
        | "conversations.archive"
        | "pins.add"
        | "bookmarks.add"
        | "usergroups.users.list" => 2,
        "conversations.invite"
        | "conversations.info"
        | "conversations.history"
        | "conversations.replies"
        | "conversations.join"
        | "conversations.open"
        | "chat.update"
        | "reactions.add"
        | "apps.connections.open" => 3,
        "conversations.members"
        | "chat.postEphemeral"
        | "views.open"
        | "views.push"
        | "views.update"
        | "users.info"
        | "files.getUploadURLExternal"
        | "files.completeUploadExternal"
        | "files.info" => 4,
        // Special tier: `auth.test`, `chat.getPermalink`, and `chat.postMessage` (per channel).
        _ => return None,
    })
}

/// `Some(retry_after_secs)` when the rate tiers are on and `method` is over its limit.
pub(crate) fn over_limit(
    shared: &super::Shared,
    method: &str,
    arguments: &serde_json::Map<String, serde_json::Value>,
) -> Option<u64> {
    let channel = arguments.get("channel").and_then(|c| c.as_str());
    shared.state().rate.as_mut()?.admit(method, channel, Instant::now())
}

/// Calls allowed per minute in a tier.
fn per_minute(tier: u8) -> usize {
    match tier {
        1 => 1,
        2 => 20,
        3 => 50,
        _ => 100,
    }
}

const MINUTE: Duration = Duration::from_secs(60);
/// `chat.postMessage`: about one message per second per channel.
const POST_WINDOW: Duration = Duration::from_secs(1);

/// The calls let through in the current windows, per method (or per `chat.postMessage` channel).
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    windows: HashMap<String, VecDeque<Instant>>,
    /// How many calls were answered 429.
    pub refused: usize,
}

impl Limiter {
    /// Lets the call through (`None`) or says how many seconds to wait (`Some(retry_after)`).
    /// `channel` matters only for `chat.postMessage`.
    pub(crate) fn admit(&mut self, method: &str, channel: Option<&str>, now: Instant) -> Option<u64> {
        let (key, limit, window) = match (method, tier(method)) {
            ("chat.postMessage", _) => (format!("{method}:{}", channel.unwrap_or_default()), 1, POST_WINDOW),
            (_, Some(tier)) => (method.to_owned(), per_minute(tier), MINUTE),
            (_, None) => return None,
        };
        let calls = self.windows.entry(key).or_default();
        while calls.front().is_some_and(|at| now.duration_since(*at) >= window) {
            calls.pop_front();
        }
        if calls.len() < limit {
            calls.push_back(now);
            return None;
        }
        self.refused += 1;
        // The oldest call in the window leaves it first; Slack rounds up to whole seconds.
        let oldest = calls.front().copied().unwrap_or(now);
        let wait = window.saturating_sub(now.duration_since(oldest));
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).map(|s| s.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_two_method_gets_twenty_calls_a_minute_then_waits_for_the_oldest() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        for i in 0..20 {
            let at = start + Duration::from_secs(i);
            assert_eq!(limiter.admit("conversations.create", None, at), None, "call {i}");
        }
        let at = start + Duration::from_millis(30_500);
        assert_eq!(limiter.admit("conversations.create", None, at), Some(30));
        assert_eq!(limiter.refused, 1);
        // Another method has its own window.
        assert_eq!(limiter.admit("chat.update", None, at), None);
        // Once the first call is a minute old, one more fits.
        assert_eq!(limiter.admit("conversations.create", None, start + MINUTE), None);
    }

    #[test]
    fn chat_post_message_is_limited_per_channel_to_one_a_second() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        assert_eq!(limiter.admit("chat.postMessage", Some("C1"), start), None);
        assert_eq!(limiter.admit("chat.postMessage", Some("C2"), start), None);
        let soon = start + Duration::from_millis(200);
        assert_eq!(limiter.admit("chat.postMessage", Some("C1"), soon), Some(1));
        assert_eq!(limiter.admit("chat.postMessage", Some("C1"), start + POST_WINDOW), None);
        assert_eq!(
            limiter.admit("auth.test", None, soon),
            None,
            "special tier: not limited"
        );
    }

    #[test]
    fn tiers_match_slacks_method_pages() {
        // The method pages Slack publishes (copied to ../shared/slack/methods) name each tier.
        let dirs = [
            std::path::PathBuf::from("/work/shared/slack/methods"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/slack/methods"),
        ];
        let Some(dir) = dirs.iter().find(|d| d.is_dir()) else {
            eprintln!("skipped: Slack's method pages are not on this machine");
            return;
        };
        let methods = [
            "conversations.create",
            "conversations.invite",
            "conversations.setTopic",
            "conversations.info",
            "conversations.members",
            "conversations.history",
            "conversations.replies",
            "chat.postMessage",
            "chat.postEphemeral",
            "chat.update",
            "pins.add",
            "bookmarks.add",
            "views.open",
            "users.info",
            "files.completeUploadExternal",
            "files.info",
        ];
        for method in methods {
            let page = std::fs::read_to_string(dir.join(format!("{method}.json"))).expect("method page");
            let page: serde_json::Value = serde_json::from_str(&page).expect("JSON");
            let documented = page["rate_limits"].as_str().unwrap_or_default();
            let ours = tier(method).map_or("t5".to_owned(), |t| format!("t{t}"));
            assert_eq!(ours, documented, "{method}");
        }
    }
}
