//! What Slack's message composer sends for the text a person typed.
//!
//! Slack entity-encodes `&`, `<` and `>` in everything people type — slash-command text,
//! `plain_text_input` values in `view_submission`, message text returned by
//! `conversations.history` — and marks what was picked from autocomplete as `<…>` entities.
//! With `should_escape: true` on the command (our manifest), a command's mentions carry the name
//! (`<@U123|bob>`, `<#C123|general>`) and URLs come as `<https://…>`; message text stores user
//! mentions as `<@U123>`. Inside an entity, `&` in a URL is `&amp;` too.
//!
//! Tests write text as a person types it. What the composer would have turned into an entity is
//! recognised: `@name` of a workspace member, `#name` of a channel, a bare `http(s)://` URL, and
//! a token already written in Slack's entity form (`<@U…>`, `<#C…|name>`, `<!subteam^…>`,
//! `<!here>`, `<https://…|label>`: what a picker or the link dialog inserts). Everything else is
//! typed text and gets encoded.
//!
//! Kept apart from `crate::slack::text` on purpose: this is the Slack side, written from Slack's
//! docs, so the bot's decoder is tested against an independent encoder.

use super::state::State;

/// `&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;` (Slack encodes nothing else).
pub(crate) fn encode(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Where the text goes: a command keeps names on mentions; a stored message does not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    Command,
    Message,
}

/// Typed text → the text Slack sends (see the module docs).
pub(crate) fn compose(state: &State, typed: &str, surface: Surface) -> String {
    let mut out = String::with_capacity(typed.len() + 16);
    let mut rest = typed;
    // The character before the current one, as typed: entities start words.
    let mut prev: Option<char> = None;
    while let Some((pos, c)) = rest.char_indices().find(|(_, c)| matches!(c, '<' | '@' | '#' | 'h')) {
        out.push_str(&encode(&rest[..pos]));
        prev = rest[..pos].chars().last().or(prev);
        let tail = &rest[pos..];
        let word_start = prev.is_none_or(|p| p.is_whitespace() || p == '(');
        let taken = match c {
            '<' => entity(state, tail, surface),
            '@' | '#' if word_start => mention(state, tail, surface),
            'h' if word_start => bare_url(tail),
            _ => None,
        };
        let len = match taken {
            Some((sent, len)) => {
                out.push_str(&sent);
                len
            }
            None => {
                out.push_str(&encode(&tail[..c.len_utf8()]));
                c.len_utf8()
            }
        };
        prev = tail[..len].chars().last();
        rest = &tail[len..];
    }
    out.push_str(&encode(rest));
    out
}

/// A token already in entity form: kept, with the name added to mentions on commands.
fn entity(state: &State, tail: &str, surface: Surface) -> Option<(String, usize)> {
    let end = tail.find('>')?;
    let inner = &tail[1..end];
    if inner.is_empty() || inner.contains('<') {
        return None;
    }
    let (target, label) = match inner.split_once('|') {
        Some((t, l)) => (t, Some(l)),
        None => (inner, None),
    };
    let is_id = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let sent = if let Some(id) = target.strip_prefix('@').filter(|id| is_id(id)) {
        let name = label.map(str::to_owned).or_else(|| state.user_name(id));
        match (surface, name) {
            (Surface::Command, Some(name)) => format!("<@{id}|{}>", encode(&name)),
            _ => format!("<@{id}>"),
        }
    } else if let Some(id) = target.strip_prefix('#').filter(|id| is_id(id)) {
        let name = label
            .map(str::to_owned)
            .or_else(|| state.channel(id).map(|c| c.channel.name.clone()));
        match name {
            Some(name) => format!("<#{id}|{}>", encode(&name)),
            None => format!("<#{id}>"),
        }
    } else if target.starts_with('!') && !target.contains(char::is_whitespace) {
        match label {
            Some(label) => format!("<{target}|{}>", encode(label)),
            None => format!("<{target}>"),
        }
    } else if is_url(target) {
        match label {
            Some(label) => format!("<{}|{}>", encode(target), encode(label)),
            None => format!("<{}>", encode(target)),
        }
    } else {
        return None;
    };
    Some((sent, end + 1))
}

fn is_url(text: &str) -> bool {
    (text.starts_with("https://") || text.starts_with("http://") || text.starts_with("mailto:"))
        && text.len() > 8
        && !text.contains(char::is_whitespace)
}

/// `@name` of a member or `#name` of a channel, as the composer resolves it.
fn mention(state: &State, tail: &str, surface: Surface) -> Option<(String, usize)> {
    let sigil = tail.chars().next()?;
    let len = tail[1..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map_or(tail.len(), |n| n + 1);
    let name = tail[1..len].trim_end_matches(['.', '-']);
    if name.is_empty() {
        return None;
    }
    let len = 1 + name.len();
    if sigil == '@' {
        let (id, user) = state.users.iter().find(|(_, u)| u.name == name)?;
        let sent = match surface {
            Surface::Command => format!("<@{id}|{}>", user.name),
            Surface::Message => format!("<@{id}>"),
        };
        return Some((sent, len));
    }
    let record = state
        .channels
        .iter()
        .find(|c| !c.channel.is_im && !c.channel.is_private && c.channel.name == name)?;
    Some((format!("<#{}|{}>", record.channel.id, record.channel.name), len))
}

/// A bare URL typed in text: Slack links it (`<https://…>`); a trailing `.`/`,`/`)` stays text.
fn bare_url(tail: &str) -> Option<(String, usize)> {
    if !(tail.starts_with("https://") || tail.starts_with("http://")) {
        return None;
    }
    let len = tail.find(|c: char| c.is_whitespace() || c == '<').unwrap_or(tail.len());
    let url = tail[..len].trim_end_matches(['.', ',', ')', ';', ':', '!', '?']);
    is_url(url).then(|| (format!("<{}>", encode(url)), url.len()))
}

/// Encodes the `value` of every `plain_text_input` in a submission's `state.values`, finding
/// each input's type in the view's `blocks` (tests may leave `type` out).
pub(crate) fn encode_plain_inputs(values: &mut serde_json::Value, blocks: &serde_json::Value) {
    let Some(by_block) = values.as_object_mut() else { return };
    for (block_id, actions) in by_block.iter_mut() {
        let Some(actions) = actions.as_object_mut() else {
            continue;
        };
        for (action_id, action) in actions.iter_mut() {
            let declared = blocks.as_array().into_iter().flatten().find_map(|b| {
                let element = &b["element"];
                (b["block_id"] == block_id.as_str() && element["action_id"] == action_id.as_str())
                    .then(|| element["type"].clone())
            });
            let is_plain = declared.as_ref().unwrap_or(&action["type"]) == "plain_text_input";
            if let (true, Some(value)) = (is_plain, action["value"].as_str()) {
                action["value"] = serde_json::Value::String(encode(value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_is_sent_as_slack_sends_it() {
        let state = State::seeded();
        let command = |typed| compose(&state, typed, Surface::Command);
        assert_eq!(command("declare Payments & refunds"), "declare Payments &amp; refunds");
        assert_eq!(command("note a<b> @bob saw it"), "note a&lt;b&gt; <@U0BOB|bob> saw it");
        assert_eq!(command("spoc <@U0CAROL>"), "spoc <@U0CAROL|carol>");
        assert_eq!(command("x <@U0NOBODY|ghost>"), "x <@U0NOBODY|ghost>");
        assert_eq!(
            command("see https://x.example/?a=1&b=2."),
            "see <https://x.example/?a=1&amp;b=2>."
        );
        assert_eq!(
            command("see <https://x.example/?a=1&b=2|the dash>"),
            "see <https://x.example/?a=1&amp;b=2|the dash>"
        );
        assert_eq!(command("mail bob@corp.example"), "mail bob@corp.example");
        assert_eq!(
            command("<!here> & <!subteam^S1|@oncall>"),
            "<!here> &amp; <!subteam^S1|@oncall>"
        );
        assert_eq!(command("<not an entity>"), "&lt;not an entity&gt;");
        let message = compose(&state, "thanks @bob & <@U0CAROL>", Surface::Message);
        assert_eq!(message, "thanks <@U0BOB> &amp; <@U0CAROL>");
    }
}
