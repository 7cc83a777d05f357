//! Text as Slack sends it, decoded once at the edge into the plain text the domain stores.
//!
//! Why one module: Slack entity-encodes everything people type (`&` → `&amp;`, `<` → `&lt;`,
//! `>` → `&gt;`) in slash-command text, `view_submission` plain-text values and message text
//! (`conversations.history`), and marks what was *picked* rather than typed — mentions, channels,
//! user groups, links — as `<…>` entities (`<@U123|bob>`, `<#C123|general>`,
//! `<!subteam^S1|@oncall>`, `<https://x.example/?a=1&amp;b=2|label>`). Stored as received, that
//! text would be escaped a second time on output (`Payments &amp;amp; refunds`, literal
//! `<@U123|bob>`); so every text field is decoded here, the domain keeps plain text, and
//! [`crate::slack::blocks::escape`] escapes it exactly once on the way out.
//!
//! The same place applies the control-character rule to every text field (one rule, one place):
//! NUL and other C0/C1 controls never reach the domain, Slack or the database. Multi-line fields
//! keep newlines and tabs (`\r\n` becomes `\n`); one-line fields turn them into spaces.

/// Whether a field may hold several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Titles, names, one-line inputs: newlines and tabs become spaces.
    One,
    /// Notes, descriptions, multi-line inputs: newlines and tabs stay.
    Many,
}

/// The control-character rule: drops every control character (`char::is_control`: NUL, escape,
/// DEL, C1 controls…) except, in multi-line fields, `\n` and `\t`. A `\r` before `\n` is dropped,
/// a lone `\r` becomes a line break (one-line fields: a space).
pub fn clean(text: &str, lines: Lines) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let c = match c {
            '\r' if chars.peek() == Some(&'\n') => continue,
            '\r' => '\n',
            c => c,
        };
        match (c, lines) {
            ('\n' | '\t', Lines::Many) => out.push(c),
            ('\n' | '\t', Lines::One) => out.push(' '),
            (c, _) if c.is_control() => {}
            (c, _) => out.push(c),
        }
    }
    out
}

/// Decodes Slack's three entities in one pass (`&amp;lt;` is the text `&lt;`, not `<`). Other
/// `&…;` sequences are left alone: Slack encodes only these three.
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (decoded, len) = if tail.starts_with("&amp;") {
            ('&', 5)
        } else if tail.starts_with("&lt;") {
            ('<', 4)
        } else if tail.starts_with("&gt;") {
            ('>', 4)
        } else {
            ('&', 1)
        };
        out.push(decoded);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// A plain-text value of a modal input (`plain_text_input`): entity-decoded, then cleaned.
pub fn input_value(raw: &str, lines: Lines) -> String {
    clean(&decode_entities(raw), lines)
}

/// Something Slack marks up as `<…>` in text: what a person picked, not typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// `<@U123>` or `<@U123|bob>`.
    User { id: String, label: Option<String> },
    /// `<#C123>` or `<#C123|general>`.
    Channel { id: String, label: Option<String> },
    /// `<!subteam^S123>` or `<!subteam^S123|@oncall>`.
    Subteam { id: String, label: Option<String> },
    /// `<!here>`, `<!channel>`, `<!everyone>`, `<!date^…|fallback>`.
    Special { name: String, label: Option<String> },
    /// `<https://…>` or `<https://…|label>` (also `mailto:`), URL and label decoded.
    Link { url: String, label: Option<String> },
}

impl Entity {
    /// Reads one `<…>` token (with its brackets); `None` when it is not one of Slack's entities.
    pub fn parse(token: &str) -> Option<Entity> {
        let inner = token.strip_prefix('<')?.strip_suffix('>')?;
        if inner.contains(['<', '>']) {
            return None;
        }
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(decode_entities(l)).filter(|l| !l.is_empty())),
            None => (inner, None),
        };
        let id_ok = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
        if let Some(id) = target.strip_prefix('@') {
            return id_ok(id).then(|| Entity::User {
                id: id.to_string(),
                label,
            });
        }
        if let Some(id) = target.strip_prefix('#') {
            return id_ok(id).then(|| Entity::Channel {
                id: id.to_string(),
                label,
            });
        }
        if let Some(id) = target.strip_prefix("!subteam^") {
            return id_ok(id).then(|| Entity::Subteam {
                id: id.to_string(),
                label,
            });
        }
        if let Some(name) = target.strip_prefix('!') {
            return (!name.is_empty()).then(|| Entity::Special {
                name: name.to_string(),
                label,
            });
        }
        let url = decode_entities(target);
        let scheme_ok = ["https://", "http://", "mailto:"].iter().any(|s| url.starts_with(s));
        (scheme_ok && !url.chars().any(char::is_whitespace)).then_some(Entity::Link { url, label })
    }

    /// How the entity reads in plain text: `@bob`, `#general`, `@oncall`, `@here`, a link's
    /// label followed by its URL (or the URL alone).
    pub fn readable(&self) -> String {
        self.readable_with(&Names::new())
    }

    /// As [`Entity::readable`], naming a user mention that carries no name from `names`.
    pub fn readable_with(&self, names: &Names) -> String {
        match self {
            Entity::User { id, label } => {
                format!(
                    "@{}",
                    label.as_deref().or(names.get(id).map(String::as_str)).unwrap_or(id)
                )
            }
            Entity::Channel { id, label } => format!("#{}", label.as_deref().unwrap_or(id)),
            Entity::Subteam { id, label } => match label {
                Some(l) if l.starts_with('@') => l.clone(),
                Some(l) => format!("@{l}"),
                None => format!("@{id}"),
            },
            Entity::Special { name, label } => match label {
                Some(l) => l.clone(),
                None => format!("@{}", name.split('^').next().unwrap_or(name)),
            },
            Entity::Link { url, label } => match label {
                Some(l) if l != url && !url.ends_with(l.as_str()) => format!("{l} ({url})"),
                _ => url.strip_prefix("mailto:").unwrap_or(url).to_string(),
            },
        }
    }
}

/// User id → handle, for mentions that carry no name.
pub type Names = std::collections::BTreeMap<String, String>;

/// Message or command text as Slack sends it → plain text: entities become readable
/// ([`Entity::readable`]), the rest is entity-decoded, then [`clean`]ed.
pub fn plain(raw: &str, lines: Lines) -> String {
    plain_with(raw, lines, &Names::new())
}

/// The ids of user mentions without a name (`<@U123>`: how message text, e.g. from
/// `conversations.history`, carries them), each once, in order: look them up, then
/// [`plain_with`].
pub fn unnamed_mentions(raw: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (start, _) in raw.match_indices("<@") {
        let tail = &raw[start..];
        if let Some(Entity::User { id, label: None }) = tail.find('>').and_then(|end| Entity::parse(&tail[..=end])) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// As [`plain`], with `names` for user mentions that carry none.
pub fn plain_with(raw: &str, lines: Lines, names: &Names) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..start]));
        let tail = &rest[start..];
        match tail
            .find('>')
            .and_then(|end| Entity::parse(&tail[..=end]).map(|e| (e, end)))
        {
            Some((entity, end)) => {
                out.push_str(&entity.readable_with(names));
                rest = &tail[end + 1..];
            }
            None => {
                // A bare `<` never comes from Slack (it sends `&lt;`); keep it as text.
                out.push('<');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(&decode_entities(rest));
    clean(&out, lines)
}

/// Splits command text into words at whitespace, keeping each `<…>` entity whole even when its
/// label has spaces (`<https://x|the runbook>`).
pub fn words(raw: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut in_entity = false;
    for (i, c) in raw.char_indices() {
        match c {
            '<' if start.is_none() => {
                start = Some(i);
                in_entity = true;
            }
            '<' => in_entity = true,
            '>' => in_entity = false,
            c if c.is_whitespace() && !in_entity => {
                if let Some(s) = start.take() {
                    out.push(&raw[s..i]);
                }
            }
            _ if start.is_none() => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&raw[s..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_decode_once() {
        assert_eq!(decode_entities("Payments &amp; refunds"), "Payments & refunds");
        assert_eq!(decode_entities("a &lt;b&gt; c"), "a <b> c");
        assert_eq!(decode_entities("&amp;lt; stays"), "&lt; stays");
        assert_eq!(decode_entities("AT&T &copy; & co"), "AT&T &copy; & co");
    }

    #[test]
    fn mentions_channels_groups_and_links_read_as_plain_text() {
        assert_eq!(
            plain(
                "ask <@U0BOB|bob> in <#C1|payments> &amp; <!subteam^S1|@oncall>, <!here>",
                Lines::One
            ),
            "ask @bob in #payments & @oncall, @here"
        );
        assert_eq!(plain("ping <@U0BOB>", Lines::One), "ping @U0BOB");
        let raw = "<@U0BOB> and <@U0AL|alice> and <@U0BOB>, <@U0DAVE>";
        assert_eq!(unnamed_mentions(raw), ["U0BOB", "U0DAVE"]);
        let names = Names::from([("U0BOB".to_string(), "bob".to_string())]);
        assert_eq!(plain_with(raw, Lines::One, &names), "@bob and @alice and @bob, @U0DAVE");
        assert_eq!(
            plain("see <https://x.example/q?a=1&amp;b=2|the dash> now", Lines::One),
            "see the dash (https://x.example/q?a=1&b=2) now"
        );
        assert_eq!(
            plain("<https://x.example/q?a=1&amp;b=2>", Lines::One),
            "https://x.example/q?a=1&b=2"
        );
        assert_eq!(plain("<mailto:a@b.example|a@b.example>", Lines::One), "a@b.example");
        assert_eq!(plain("1 &lt; 2 &gt; 0", Lines::One), "1 < 2 > 0");
        assert_eq!(
            plain("stray < and <not an entity>", Lines::One),
            "stray < and <not an entity>"
        );
    }

    #[test]
    fn control_characters_follow_one_rule() {
        assert_eq!(clean("a\u{0}b\u{7}c\u{1b}[31md\u{7f}\u{85}", Lines::One), "abc[31md");
        assert_eq!(clean("one\r\ntwo\rthree\tx", Lines::Many), "one\ntwo\nthree\tx");
        assert_eq!(clean("one\r\ntwo\tx", Lines::One), "one two x");
        assert_eq!(input_value("R&amp;D\u{0}", Lines::One), "R&D");
        assert_eq!(plain("a\u{0}&amp;b", Lines::One), "a&b");
    }

    #[test]
    fn entity_parsing_is_strict() {
        assert_eq!(
            Entity::parse("<@U0BOB|bob>"),
            Some(Entity::User {
                id: "U0BOB".into(),
                label: Some("bob".into())
            })
        );
        assert_eq!(Entity::parse("<@bob smith>"), None);
        assert_eq!(Entity::parse("<javascript:alert(1)>"), None);
        assert_eq!(Entity::parse("<https://a b>"), None);
        assert_eq!(Entity::parse("@U0BOB"), None);
    }

    #[test]
    fn words_keep_entities_whole() {
        assert_eq!(
            words(" fix  it <https://x|the runbook> <@U1|a>\tdue 2026-01-01 "),
            vec!["fix", "it", "<https://x|the runbook>", "<@U1|a>", "due", "2026-01-01"]
        );
        assert_eq!(words("a<b c"), vec!["a<b c"]);
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics_and_leaves_no_controls(raw in "\\PC{0,80}|[<>&|@#!a-z;\u{0}\n\r]{0,40}") {
            let out = plain(&raw, Lines::One);
            proptest::prop_assert!(!out.chars().any(char::is_control));
            let _ = words(&raw);
        }
    }
}
