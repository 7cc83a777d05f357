//! Parses `/incident` text into a [`Command`]. Pure: every input either parses or yields a
//! message saying what was wrong (never a panic), which the handler shows with the usage.

use crate::incident::model::*;

/// What a user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `/incident` or `/incident declare [title]`: open the declare modal.
    Declare {
        title: String,
    },
    Help,
}

pub const USAGE: &str = "*Usage:* `/incident` or `/incident declare [title]` to declare · `/incident help`";

/// Longest text we read: Slack caps a slash command at 4,000 characters anyway.
const MAX_TEXT: usize = 4_000;

/// Parses the text after `/incident`.
pub fn parse(text: &str) -> Result<Command, String> {
    if text.chars().count() > MAX_TEXT {
        return Err(format!("That is over {MAX_TEXT} characters."));
    }
    let text = text.trim();
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    };
    match word.to_ascii_lowercase().as_str() {
        "" => Ok(Command::Declare { title: String::new() }),
        "declare" | "new" => Ok(Command::Declare {
            title: rest.chars().take(MAX_TITLE_CHARS).collect(),
        }),
        "help" | "?" => Ok(Command::Help),
        other => Err(format!("I don't know `{}`.", crate::slack::blocks::truncate(other, 40))),
    }
}

/// Reads a user mention as Slack escapes it (`<@U123|name>` or `<@U123>`).
pub fn parse_user(token: &str) -> Result<UserId, String> {
    let inner = token
        .strip_prefix("<@")
        .and_then(|t| t.strip_suffix('>'))
        .ok_or_else(|| {
            format!(
                "`{}` is not a user mention; type @ and pick a person.",
                crate::slack::blocks::truncate(token, 40)
            )
        })?;
    let id = inner.split('|').next().unwrap_or_default();
    UserId::parse(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declare_forms() {
        assert_eq!(parse(""), Ok(Command::Declare { title: String::new() }));
        assert_eq!(parse("  "), Ok(Command::Declare { title: String::new() }));
        assert_eq!(
            parse("declare Payments API 500s"),
            Ok(Command::Declare {
                title: "Payments API 500s".into()
            })
        );
        assert_eq!(parse("DECLARE"), Ok(Command::Declare { title: String::new() }));
        assert_eq!(parse("help"), Ok(Command::Help));
    }

    #[test]
    fn unknown_words_are_named() {
        let err = parse("explode now").unwrap_err();
        assert!(err.contains("explode"), "{err}");
        assert!(parse(&"x".repeat(5000)).is_err());
    }

    #[test]
    fn mentions_in_both_escaped_forms() {
        assert_eq!(parse_user("<@U0BOB|bob>").unwrap().as_str(), "U0BOB");
        assert_eq!(parse_user("<@W123>").unwrap().as_str(), "W123");
        assert!(parse_user("@bob").is_err());
        assert!(parse_user("<#C123|general>").is_err());
        assert!(parse_user("<!subteam^S123|@ops>").is_err());
    }
}
