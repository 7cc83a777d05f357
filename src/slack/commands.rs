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
    List,
    Update,
    Severity(Severity),
    Spoc(UserId),
    Role {
        role: String,
        user: UserId,
    },
    Handover {
        to: UserId,
        note: String,
    },
    Impact,
    Note(String),
    Ack,
    Resolve,
    Close,
    Reopen,
    Cancel,
    Status,
    Timeline {
        page: usize,
    },
    /// `/incident report [weekly|monthly|YYYY-MM-DD..YYYY-MM-DD] [service:<name>] [public]`.
    Report {
        period: crate::report::PeriodSpec,
        service: Option<String>,
        public: bool,
    },
}

impl Command {
    /// Commands that act on the incident whose channel they are typed in.
    pub fn needs_incident(&self) -> bool {
        !matches!(
            self,
            Command::Declare { .. } | Command::Help | Command::List | Command::Report { .. }
        )
    }
}

pub const USAGE: &str = "*Usage:* `/incident [declare <title>]` · `update` · `severity SEV1-4` · `spoc @user` · \
`role <role> @user` · `handover @user [note]` · `impact` · `note <text>` · `ack` · `resolve` · `close` · `reopen` · \
`cancel` · `status` · `timeline [page]` · `list` · `report [weekly|monthly|FROM..TO] [service:<name>] [public]` · `help`";

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
    let mut args = rest.split_whitespace();
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(format!("`{word}` takes no arguments."))
        }
    };
    match word.to_ascii_lowercase().as_str() {
        "" => Ok(Command::Declare { title: String::new() }),
        "declare" | "new" => Ok(Command::Declare {
            title: rest.chars().take(MAX_TITLE_CHARS).collect(),
        }),
        "help" | "?" => Ok(Command::Help),
        "list" => no_args(Command::List),
        "update" => no_args(Command::Update),
        "impact" => no_args(Command::Impact),
        "ack" | "acknowledge" => no_args(Command::Ack),
        "resolve" => no_args(Command::Resolve),
        "close" => no_args(Command::Close),
        "reopen" => no_args(Command::Reopen),
        "cancel" => no_args(Command::Cancel),
        "status" => no_args(Command::Status),
        "timeline" => match args.next() {
            None => Ok(Command::Timeline { page: 1 }),
            Some(p) => match p.parse::<usize>() {
                Ok(page) if page >= 1 && args.next().is_none() => Ok(Command::Timeline { page }),
                _ => Err(format!("`{}` is not a page number.", short(p))),
            },
        },
        "severity" | "sev" => match (args.next(), args.next()) {
            (Some(sev), None) => sev.parse().map(Command::Severity),
            _ => Err("Give one severity: `/incident severity SEV2`.".into()),
        },
        "spoc" => match (args.next(), args.next()) {
            (Some(user), None) => parse_user(user).map(Command::Spoc),
            _ => Err("Name one person: `/incident spoc @user`.".into()),
        },
        "role" => match (args.next(), args.next(), args.next()) {
            (Some(role), Some(user), None) => Ok(Command::Role {
                role: role.to_ascii_lowercase(),
                user: parse_user(user)?,
            }),
            _ => Err("Name a role and a person: `/incident role comms @user`.".into()),
        },
        "handover" => match args.next() {
            Some(user) => Ok(Command::Handover {
                to: parse_user(user)?,
                note: rest[user.len()..].trim().to_string(),
            }),
            None => Err("Name the new SPOC: `/incident handover @user [note]`.".into()),
        },
        "note" => {
            if rest.is_empty() {
                Err("Write the note after the command: `/incident note <text>`.".into())
            } else {
                Ok(Command::Note(rest.to_string()))
            }
        }
        "report" => parse_report(rest),
        other => Err(format!("I don't know `{}`.", short(other))),
    }
}

pub const REPORT_USAGE: &str =
    "`/incident report [weekly|monthly|YYYY-MM-DD..YYYY-MM-DD] [service:<name>] [public]` (default: the last 7 days)";

/// `report` arguments, in any order: at most one period, one `service:<name>`, `public`.
fn parse_report(rest: &str) -> Result<Command, String> {
    let (mut period, mut service, mut public) = (None, None, false);
    for word in rest.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        if lower == "public" {
            public = true;
        } else if let Some(name) = lower.strip_prefix("service:") {
            if name.is_empty() || service.is_some() {
                return Err(format!(
                    "Name one service line, like `service:payments`. Usage: {REPORT_USAGE}"
                ));
            }
            service = Some(name.to_string());
        } else if period.is_none() {
            period = Some(crate::report::PeriodSpec::parse(word).map_err(|e| format!("{e} Usage: {REPORT_USAGE}"))?);
        } else {
            return Err(format!("Give one period. Usage: {REPORT_USAGE}"));
        }
    }
    Ok(Command::Report {
        period: period.unwrap_or(crate::report::PeriodSpec::Last7Days),
        service,
        public,
    })
}

fn short(s: &str) -> String {
    crate::slack::blocks::truncate(s, 40)
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
    fn incident_commands() {
        assert_eq!(parse("severity sev2"), Ok(Command::Severity(Severity::Sev2)));
        assert!(parse("severity SEV9").unwrap_err().contains("SEV9"));
        assert!(parse("severity").is_err());
        assert_eq!(
            parse("spoc <@U0BOB|bob>"),
            Ok(Command::Spoc(UserId::parse("U0BOB").unwrap()))
        );
        assert!(parse("spoc bob").unwrap_err().contains("mention"));
        assert_eq!(
            parse("role Comms <@U0DAVE>"),
            Ok(Command::Role {
                role: "comms".into(),
                user: UserId::parse("U0DAVE").unwrap()
            })
        );
        assert_eq!(
            parse("handover <@U0CAROL> db failover in progress, watch replication"),
            Ok(Command::Handover {
                to: UserId::parse("U0CAROL").unwrap(),
                note: "db failover in progress, watch replication".into()
            })
        );
        assert_eq!(parse("note  saw 502s  "), Ok(Command::Note("saw 502s".into())));
        assert!(parse("note").is_err());
        assert_eq!(parse("timeline 2"), Ok(Command::Timeline { page: 2 }));
        assert!(parse("timeline 0").is_err());
        assert!(parse("resolve now").unwrap_err().contains("no arguments"));
        for (text, needs) in [
            ("list", false),
            ("help", false),
            ("", false),
            ("status", true),
            ("close", true),
        ] {
            assert_eq!(parse(text).unwrap().needs_incident(), needs, "{text}");
        }
    }

    #[test]
    fn report_arguments_in_any_order() {
        use crate::report::PeriodSpec;
        assert_eq!(
            parse("report"),
            Ok(Command::Report {
                period: PeriodSpec::Last7Days,
                service: None,
                public: false
            })
        );
        assert_eq!(
            parse("report public Service:Payments monthly"),
            Ok(Command::Report {
                period: PeriodSpec::Monthly,
                service: Some("payments".into()),
                public: true
            })
        );
        let Ok(Command::Report { period, .. }) = parse("report 2026-11-16..2026-11-22") else {
            panic!("a range parses")
        };
        assert_eq!(period, PeriodSpec::parse("2026-11-16..2026-11-22").unwrap());
        assert!(!parse("report weekly").unwrap().needs_incident());
        for (text, problem) in [
            ("report 2026-11-22..2026-11-16", "before it starts"),
            ("report 2026-02-30..2026-03-01", "not a date"),
            ("report 2024-01-01..2025-06-01", "at most 366 days"),
            ("report weekly monthly", "one period"),
            ("report service:", "one service line"),
            ("report yesterday", "not a period"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(problem) && err.contains("Usage"), "{text}: {err}");
        }
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

    proptest::proptest! {
        #[test]
        fn no_text_makes_the_parser_panic(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn command_shaped_text_parses_or_explains(
            word in "(declare|update|severity|sev|spoc|role|handover|note|timeline|list|ack|resolve|close|reopen|cancel|status|impact|report|help|x)",
            args in "( (<@[A-Za-z0-9|_]{0,12}>|SEV[0-9]|[a-z_]{0,8}|[0-9]{1,3}|<#C1\\|x>|<!subteam\\^S1>)){0,3}",
        ) {
            match parse(&format!("{word}{args}")) {
                Ok(_) => {}
                Err(message) => proptest::prop_assert!(!message.is_empty()),
            }
        }
    }
}
