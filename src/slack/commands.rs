//! Parses `/incident` text into a [`Command`]. Pure: every input either parses or yields a
//! message saying what was wrong (never a panic), which the handler shows with the usage.
//!
//! The text arrives as Slack sends it (entity-encoded, mentions and links as `<…>`); free text
//! (titles, notes, follow-ups, links) leaves here decoded by [`crate::slack::text`].

use crate::incident::followup::FollowUpState;
use crate::incident::model::*;
use crate::slack::text::{self, Entity, Lines};

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
    /// `/incident followup <text> [@owner] [due YYYY-MM-DD] [link]`; no text opens the form.
    FollowUp(Option<FollowUpRequest>),
    /// `/incident followup done N` or `/incident followup wontdo N`.
    CloseFollowUp {
        seq: i64,
        state: FollowUpState,
    },
    /// `/incident followups`: this incident's (in its channel), else yours then all open.
    FollowUps,
    /// `/incident pir`: the review draft, posted in the channel as a Markdown file.
    Pir,
    /// `/incident pir done [link]`.
    PirDone {
        link: Option<String>,
    },
    /// `/incident change CHG-12`: link a change as a suspected cause (issue 12).
    LinkChange(crate::calendar::ChangeNumber),
    /// `/incident report [weekly|monthly|YYYY-MM-DD..YYYY-MM-DD] [service:<name>] [public]`.
    Report {
        period: crate::report::PeriodSpec,
        service: Option<String>,
        public: bool,
    },
    /// `/incident vendor …`: raise, answer, escalate or close a vendor ticket.
    Vendor(crate::slack::vendors::VendorCommand),
    /// `/incident customer`: the customer-update form (issue 14).
    Customer,
    /// `/incident vendors [vendor]` (anywhere): open vendor tickets across incidents.
    Vendors {
        vendor: Option<String>,
    },
}

/// A follow-up as typed: a request to the application layer, which checks it.
pub use crate::service::FollowUpRequest;

impl Command {
    /// Commands that act on the incident whose channel they are typed in.
    pub fn needs_incident(&self) -> bool {
        !matches!(
            self,
            Command::Declare { .. }
                | Command::Help
                | Command::List
                | Command::Report { .. }
                | Command::FollowUps
                | Command::Vendors { .. }
        )
    }
}

pub const USAGE: &str = "*Usage:* `/incident [declare <title>]` · `update` · `severity SEV1-4` · `spoc @user` · \
`role <role> @user` · `handover @user [note]` · `impact` · `note <text>` · `ack` · `resolve` · `close` · `reopen` · \
`cancel` · `status` · `timeline [page]` · `followup <text> [@owner] [due YYYY-MM-DD]` · `followup done|wontdo N` · \
`followups` · `pir` · `pir done [link]` · `vendor [<vendor> <ref>]` · `vendor reply|escalate|close <V1>` · \
`vendors [vendor]` · `customer` · `list` · `report [weekly|monthly|FROM..TO] [service:<name>] [public]` · `help`";

pub const FOLLOW_UP_USAGE: &str = "`/incident followup <text> [@owner] [due YYYY-MM-DD] [link]`, \
`/incident followup done N`, `/incident followup wontdo N`";

/// Longest text we read: Slack caps a slash command at 4,000 characters anyway.
const MAX_TEXT: usize = 4_000;

/// Parses the text after `/incident`.
pub fn parse(text: &str) -> Result<Command, String> {
    if text.chars().count() > MAX_TEXT {
        return Err(format!("That is over {MAX_TEXT} characters."));
    }
    let text = text::clean(text, Lines::Many);
    let text = text.trim();
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    };
    let lower = word.to_ascii_lowercase();
    parse_word(&lower, word, rest).map_err(|problem| {
        // Each subcommand's error carries its own usage line, never the whole command list
        // (an unknown word gets that list; it already names `/incident`).
        if problem.contains("/incident") {
            problem
        } else {
            format!("{problem} Usage: {}", usage_of(&lower))
        }
    })
}

/// The usage line of one subcommand (the whole list for a word we do not know).
pub fn usage_of(word: &str) -> String {
    match word {
        "timeline" => "`/incident timeline [page]`".into(),
        "severity" | "sev" => "`/incident severity SEV1|SEV2|SEV3|SEV4`".into(),
        "spoc" => "`/incident spoc @user`".into(),
        "role" => "`/incident role <role> @user`".into(),
        "handover" => "`/incident handover @user [note]`".into(),
        "note" => "`/incident note <text>`".into(),
        "report" => REPORT_USAGE.into(),
        "followup" | "follow-up" | "follow_up" => FOLLOW_UP_USAGE.into(),
        "pir" | "review" => "`/incident pir`, `/incident pir done [link]`".into(),
        "vendor" | "vendors" => crate::slack::vendors::VENDOR_USAGE.into(),
        "change" => "`/incident change CHG-N`".into(),
        "list" | "update" | "impact" | "ack" | "acknowledge" | "resolve" | "close" | "reopen" | "cancel" | "status"
        | "followups" | "follow-ups" | "follow_ups" => format!("`/incident {word}`"),
        _ => USAGE.into(),
    }
}

fn parse_word(lower: &str, word: &str, rest: &str) -> Result<Command, String> {
    let mut args = rest.split_whitespace();
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(format!("`{word}` takes no arguments."))
        }
    };
    match lower {
        "" => Ok(Command::Declare { title: String::new() }),
        "declare" | "new" => Ok(Command::Declare {
            title: text::plain(rest, Lines::One)
                .trim()
                .chars()
                .take(MAX_TITLE_CHARS)
                .collect(),
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
                note: text::plain(rest[user.len()..].trim(), Lines::Many),
            }),
            None => Err("Name the new SPOC: `/incident handover @user [note]`.".into()),
        },
        "note" => {
            if rest.is_empty() {
                Err("Write the note after the command: `/incident note <text>`.".into())
            } else {
                Ok(Command::Note(text::plain(rest, Lines::Many)))
            }
        }
        "report" => parse_report(rest),
        "followup" | "follow-up" | "follow_up" => parse_follow_up(rest),
        "followups" | "follow-ups" | "follow_ups" => no_args(Command::FollowUps),
        "vendor" => crate::slack::vendors::parse_vendor(rest).map(Command::Vendor),
        "customer" | "customers" => no_args(Command::Customer),
        "vendors" => crate::slack::vendors::parse_vendors(rest).map(|vendor| Command::Vendors { vendor }),
        "pir" | "review" => match args.next().map(|w| w.to_ascii_lowercase()) {
            None => Ok(Command::Pir),
            Some(w) if w == "done" => match (args.next(), args.next()) {
                (None, _) => Ok(Command::PirDone { link: None }),
                (Some(link), None) => match parse_link(link) {
                    Some(link) => Ok(Command::PirDone { link: Some(link) }),
                    None => Err(format!(
                        "`{}` is not a link: `/incident pir done [https://…]`.",
                        short(link)
                    )),
                },
                _ => Err("Give one link: `/incident pir done [https://…]`.".into()),
            },
            Some(other) => Err(format!(
                "`pir {}`? Use `/incident pir` for the draft, `/incident pir done [link]` when it is filed.",
                short(&other)
            )),
        },
        "change" => match (args.next(), args.next()) {
            (Some(n), None) => crate::calendar::ChangeNumber::parse(n).map(Command::LinkChange),
            _ => Err("Name one change, like `CHG-12`.".into()),
        },
        other => Err(format!("I don't know `{}`.\n{USAGE}", short(other))),
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

/// `followup` arguments: `done N` / `wontdo N`, or a new follow-up whose owner (a
/// mention), due day (`due YYYY-MM-DD`) and link (a URL) may stand anywhere in the text.
fn parse_follow_up(rest: &str) -> Result<Command, String> {
    let words = text::words(rest);
    if words.is_empty() {
        return Ok(Command::FollowUp(None));
    }
    let close_state = match words[0].to_ascii_lowercase().as_str() {
        "done" => Some(FollowUpState::Done),
        "wontdo" | "won't-do" | "wont-do" | "drop" => Some(FollowUpState::WontDo),
        _ => None,
    };
    if let (Some(state), [_]) = (close_state, words.as_slice()) {
        // `done` alone is a close without its number, not a follow-up called "done".
        return Err(format!(
            "Give the follow-up's number: `/incident followup {} N`. Usage: {FOLLOW_UP_USAGE}",
            if state == FollowUpState::Done { "done" } else { "wontdo" }
        ));
    }
    if let (Some(state), [_, seq]) = (close_state, words.as_slice()) {
        if let Ok(seq) = seq.trim_start_matches('#').parse::<i64>() {
            if seq > 0 {
                return Ok(Command::CloseFollowUp { seq, state });
            }
        }
        if state == FollowUpState::WontDo {
            return Err(format!(
                "`{}` is not a follow-up number. Usage: {FOLLOW_UP_USAGE}",
                short(seq)
            ));
        }
    }
    let (mut text, mut owner, mut due, mut link) = (Vec::new(), None, None, None);
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let lower = w.to_ascii_lowercase();
        if w.starts_with("<@") {
            if owner.is_some() {
                return Err(format!("Name one owner. Usage: {FOLLOW_UP_USAGE}"));
            }
            owner = Some(parse_user(w)?);
        } else if let Some(day) = lower.strip_prefix("due:").or_else(|| {
            // `due` followed by something date-shaped, or by a day in words (refused below:
            // only YYYY-MM-DD is read); `due` in prose ("due diligence") stays text.
            (lower == "due"
                && words
                    .get(i + 1)
                    .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()) || is_day_word(n)))
            .then(|| {
                i += 1;
                words[i]
            })
        }) {
            if due.is_some() {
                return Err(format!("Give one due date. Usage: {FOLLOW_UP_USAGE}"));
            }
            if is_day_word(day) {
                return Err(format!(
                    "`{}` is not a date: write the due day as `due YYYY-MM-DD`, like `due 2026-12-15`. Usage: {FOLLOW_UP_USAGE}",
                    short(day)
                ));
            }
            due = Some(crate::report::period::parse_date(day).map_err(|e| format!("{e} Usage: {FOLLOW_UP_USAGE}"))?);
        } else if let Some(url) = parse_link(w).filter(|_| link.is_none()) {
            link = Some(url);
            // A labelled link keeps its label in the text.
            if let Some(Entity::Link { label: Some(label), .. }) = Entity::parse(w) {
                text.push(label);
            }
        } else if lower == "due" && i + 1 == words.len() {
            return Err(format!(
                "Give the due date after `due`, like `due 2026-12-15`. Usage: {FOLLOW_UP_USAGE}"
            ));
        } else {
            text.push(text::plain(w, Lines::One));
        }
        i += 1;
    }
    let text = text.join(" ");
    if text.trim().is_empty() {
        return Err(format!("Say what needs doing. Usage: {FOLLOW_UP_USAGE}"));
    }
    Ok(Command::FollowUp(Some(FollowUpRequest { text, owner, due, link })))
}

/// A day named in words after `due` (`tomorrow`, `friday`, `next`, `eow`…). These are refused
/// with the date format rather than guessed or kept as text: the due day must be unambiguous.
fn is_day_word(word: &str) -> bool {
    const DAYS: [&str; 24] = [
        "today",
        "tonight",
        "tomorrow",
        "tmrw",
        "yesterday",
        "next",
        "this",
        "eod",
        "eow",
        "eom",
        "monday",
        "mon",
        "tuesday",
        "tue",
        "tues",
        "wednesday",
        "wed",
        "thursday",
        "thu",
        "thurs",
        "friday",
        "fri",
        "saturday",
        "sunday",
    ];
    let w = word.trim_end_matches(['.', ',', '!']).to_ascii_lowercase();
    DAYS.contains(&w.as_str()) || w == "sat" || w == "sun"
}

/// A web URL as Slack sends it (`<https://…>` or `<https://…|label>`, `&` as `&amp;`), or bare;
/// decoded.
fn parse_link(word: &str) -> Option<String> {
    let url = match Entity::parse(word) {
        Some(Entity::Link { url, .. }) => url,
        Some(_) => return None,
        None => text::decode_entities(word),
    };
    let web = (url.starts_with("https://") || url.starts_with("http://")) && !url.contains(['<', '>']);
    web.then_some(url)
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
    fn follow_ups_take_owner_due_and_link_anywhere() {
        let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
        assert_eq!(
            parse("followup <@U0DAVE|dave> Add an alert on refund errors due 2026-12-15 <https://jira/OPS-1|OPS-1>"),
            Ok(Command::FollowUp(Some(FollowUpRequest {
                text: "Add an alert on refund errors OPS-1".into(),
                owner: Some(UserId::parse("U0DAVE").unwrap()),
                due: Some(day("2026-12-15")),
                link: Some("https://jira/OPS-1".into()),
            })))
        );
        assert_eq!(
            parse("followup Check the due diligence of <#C1|vendors> due:2026-12-01"),
            Ok(Command::FollowUp(Some(FollowUpRequest {
                text: "Check the due diligence of #vendors".into(),
                owner: None,
                due: Some(day("2026-12-01")),
                link: None,
            })))
        );
        assert_eq!(parse("followup"), Ok(Command::FollowUp(None)));
        assert_eq!(
            parse("followup done #3"),
            Ok(Command::CloseFollowUp {
                seq: 3,
                state: FollowUpState::Done
            })
        );
        assert_eq!(
            parse("followup wontdo 2"),
            Ok(Command::CloseFollowUp {
                seq: 2,
                state: FollowUpState::WontDo
            })
        );
        assert!(matches!(
            parse("followup done with the vendor call"),
            Ok(Command::FollowUp(Some(_)))
        ));
        for (text, problem) in [
            ("followup fix it due 2026-13-01", "not a date"),
            ("followup fix it due 15/12/2026", "not a date"),
            ("followup fix it due", "after `due`"),
            ("followup <@U0A> <@U0B> fix", "one owner"),
            ("followup <@bob> fix", "user id"),
            ("followup <@U0DAVE> due 2026-12-15", "what needs doing"),
            ("followup wontdo x", "not a follow-up number"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(problem), "{text}: {err}");
        }
        assert_eq!(parse("followups"), Ok(Command::FollowUps));
        assert!(!Command::FollowUps.needs_incident());
        assert_eq!(parse("pir"), Ok(Command::Pir));
        assert_eq!(
            parse("pir done <https://wiki/pir-42>"),
            Ok(Command::PirDone {
                link: Some("https://wiki/pir-42".into())
            })
        );
        assert!(parse("pir done soon").unwrap_err().contains("not a link"));
        assert!(parse("pir later").is_err());
    }

    #[test]
    fn closing_without_a_number_is_refused_not_stored_as_text() {
        for text in ["followup done", "followup wontdo", "followup DONE", "followup drop"] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("number") && err.contains("Usage"), "{text}: {err}");
        }
    }

    #[test]
    fn a_due_day_in_words_is_refused_with_the_date_format() {
        for text in [
            "followup fix it due tomorrow",
            "followup fix it due Friday",
            "followup fix it due next week",
            "followup fix it due today <@U0DAVE>",
            "followup fix it due:tomorrow",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("not a date") && err.contains("YYYY-MM-DD"),
                "{text}: {err}"
            );
        }
        // `due` in prose stays text.
        let Ok(Command::FollowUp(Some(f))) = parse("followup Check the due diligence") else {
            panic!("prose parses")
        };
        assert_eq!((f.text.as_str(), f.due), ("Check the due diligence", None));
    }

    #[test]
    fn each_error_carries_its_own_usage_once_and_not_the_whole_list() {
        for text in [
            "report 2026-13-45..x",
            "report 2024-01-01..2025-06-01",
            "report weekly monthly",
            "timeline x",
            "severity SEV9",
            "spoc bob",
            "role comms",
            "handover bob",
            "note",
            "resolve now",
            "followups x",
            "followup done",
            "pir later",
            "pir done soon",
        ] {
            let err = parse(text).unwrap_err();
            let word = text.split_whitespace().next().unwrap();
            assert!(
                err.contains(&format!("/incident {word}")),
                "{text}: its own usage: {err}"
            );
            assert!(err.matches("Usage").count() <= 1, "{text}: usage once: {err}");
            assert!(
                !err.contains("`help`") && err.chars().count() < 300,
                "{text}: not the whole list: {err}"
            );
        }
        let err = parse("report 2026-13-45..x").unwrap_err();
        assert_eq!(err.matches(REPORT_USAGE).count(), 1, "{err}");
        assert!(
            parse("explode").unwrap_err().contains(USAGE),
            "an unknown word lists them all"
        );
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
            word in "(declare|update|severity|sev|spoc|role|handover|note|timeline|list|ack|resolve|close|reopen|cancel|status|impact|report|help|followup|followups|pir|x)",
            args in "( (<@[A-Za-z0-9|_]{0,12}>|SEV[0-9]|[a-z_]{0,8}|[0-9]{1,3}|<#C1\\|x>|<!subteam\\^S1>|due|done|wontdo|20[0-9]{2}-[0-9]{2}-[0-9]{2}|<https://[a-z/]{0,8}(\\|[a-z]{0,4})?>)){0,4}",
        ) {
            match parse(&format!("{word}{args}")) {
                Ok(_) => {}
                Err(message) => proptest::prop_assert!(!message.is_empty()),
            }
        }
    }
}
