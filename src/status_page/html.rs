//! The status page as HTML, rendered with maud: every `(expr)` is escaped, and nothing here
//! uses `PreEscaped`, so stored text (titles, messages) can only ever be text. No script and no
//! inline style (the CSP forbids both): the look is [`STYLE`], served at `/status/style.css`.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::comms::{ComponentImpact, ComponentStatus, PageView, PublicIncident, StatusPage};

/// The page's only stylesheet: one column, system fonts, readable on a phone.
pub const STYLE: &str = r#":root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 46rem; padding: 1rem; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; align-items: center; gap: .75rem; }
header img { max-height: 2.5rem; max-width: 8rem; }
h1 { font-size: 1.5rem; margin: .5rem 0; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1.05rem; margin: 0 0 .5rem; }
a { color: inherit; }
.overall { padding: .75rem 1rem; border-radius: .5rem; font-weight: 600; border: 2px solid var(--line); }
.components { list-style: none; padding: 0; margin: 0; border: 1px solid var(--line); border-radius: .5rem; }
.components li { display: flex; justify-content: space-between; gap: 1rem; padding: .6rem 1rem; border-top: 1px solid var(--line); }
.components li:first-child { border-top: 0; }
.status { font-weight: 600; text-align: right; }
.s-operational { color: var(--ok); border-color: var(--ok); }
.s-degraded_performance, .s-partial_outage { color: var(--warn); border-color: var(--warn); }
.s-major_outage { color: var(--bad); border-color: var(--bad); }
article { border: 1px solid var(--line); border-radius: .5rem; padding: .75rem 1rem; margin: 0 0 1rem; }
.updates { list-style: none; padding: 0; margin: 0; }
.updates li { border-top: 1px solid var(--line); padding: .5rem 0; }
.updates li:first-child { border-top: 0; }
.message { white-space: pre-wrap; overflow-wrap: anywhere; margin: .25rem 0; }
.when, .affected, .meta, footer { font-size: .875rem; opacity: .8; margin: 0; }
footer { margin-top: 2rem; }
"#;

/// `GET /status`.
pub fn page(page: &StatusPage, view: &PageView) -> String {
    let body = html! {
        p class={ "overall s-" (view.overall.as_str()) } { (overall_sentence(view)) }
        section {
            h2 { "Components" }
            ul class="components" {
                @for (component, status) in &view.components {
                    li {
                        span class="name" { (component.name) }
                        span class={ "status s-" (status.as_str()) } { (status.label()) }
                    }
                }
            }
        }
        section {
            h2 { "Active incidents" }
            @if view.active.is_empty() {
                p class="meta" { "No active incidents." }
            }
            @for incident in &view.active {
                (incident_card(page, incident, true))
            }
        }
        section {
            h2 { "Resolved in the last " (crate::comms::recent_window().num_days()) " days" }
            @if view.recent.is_empty() {
                p class="meta" { "No incidents resolved recently." }
            }
            @for incident in &view.recent {
                (incident_card(page, incident, true))
            }
        }
    };
    document(page, &page.title, body).into_string()
}

/// `GET /status/incidents/<public id>`: the whole published history.
pub fn incident(page: &StatusPage, incident: &PublicIncident) -> String {
    let body = html! {
        p { a href="/status" { "← " (page.title) } }
        (incident_card(page, incident, false))
    };
    document(page, &format!("{} – {}", incident.title, page.title), body).into_string()
}

/// The 404 page of an unknown incident.
pub fn not_found(page: &StatusPage) -> String {
    let body = html! {
        h2 { "No such incident" }
        p { "This incident does not exist or is not public." }
        p { a href="/status" { "Back to " (page.title) } }
    };
    document(page, &format!("Not found – {}", page.title), body).into_string()
}

fn document(page: &StatusPage, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/status/style.css";
                link rel="alternate" type="application/atom+xml" title={ (page.title) " updates" } href="/status/feed.atom";
            }
            body {
                header {
                    @if let Some(logo) = &page.logo_url {
                        img src=(logo) alt="";
                    }
                    h1 { a href="/status" { (page.title) } }
                }
                main { (body) }
                footer {
                    "Also as " a href="/status.json" { "JSON" } " and as an " a href="/status/feed.atom" { "Atom feed" } "."
                }
            }
        }
    }
}

/// "All systems operational", or the worst status and the components in it.
fn overall_sentence(view: &PageView) -> String {
    if view.overall == ComponentStatus::Operational {
        return "All systems operational".to_string();
    }
    let worst: Vec<&str> = view
        .components
        .iter()
        .filter(|(_, s)| *s == view.overall)
        .map(|(c, _)| c.name.as_str())
        .collect();
    format!("{}: {}", view.overall.label(), worst.join(", "))
}

/// One incident and its published updates, newest first; `link` makes the title a link to its
/// own page (not on that page itself).
fn incident_card(page: &StatusPage, incident: &PublicIncident, link: bool) -> Markup {
    let href = format!("/status/incidents/{}", incident.public_id);
    html! {
        article {
            h3 {
                @if link { a href=(href) { (incident.title) } } @else { (incident.title) }
            }
            p class="meta" {
                @match incident.resolved_at {
                    Some(at) => { "Resolved " (time(page, at)) }
                    None => { "Ongoing since " (time(page, incident.started_at)) }
                }
            }
            ol class="updates" {
                @for update in &incident.updates {
                    li {
                        p class="when" {
                            @if update.last { strong { "Resolved" } " · " }
                            (time(page, update.published_at))
                        }
                        p class="message" { (update.message) }
                        @if !update.components.is_empty() {
                            p class="affected" { (affected(page, &update.components)) }
                        }
                    }
                }
            }
        }
    }
}

/// "Card payments: Partial outage, Payouts: Operational" (a component since removed from the
/// configuration shows as its id).
fn affected(page: &StatusPage, impacts: &[ComponentImpact]) -> String {
    impacts
        .iter()
        .map(|i| {
            let name = page
                .component(&i.component)
                .map_or(i.component.as_str(), |c| c.name.as_str());
            format!("{name}: {}", i.status.label())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A moment in the page's time zone and in UTC, machine-readable in `datetime`.
fn time(page: &StatusPage, at: DateTime<Utc>) -> Markup {
    let utc = at.format("%H:%M UTC").to_string();
    let text = if page.timezone == chrono_tz::UTC {
        at.format("%-d %b %Y, %H:%M UTC").to_string()
    } else {
        format!(
            "{} ({utc})",
            at.with_timezone(&page.timezone).format("%-d %b %Y, %H:%M %Z")
        )
    };
    html! { time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comms::{page_view, Component, PublicUpdate};
    use chrono::TimeZone;

    fn status_page() -> StatusPage {
        StatusPage {
            title: "Acme <status>".into(),
            logo_url: Some("https://example.com/logo.png\" onerror=\"x".into()),
            timezone: chrono_tz::Europe::Amsterdam,
            components: vec![Component {
                id: "card-payments".into(),
                name: "Card payments".into(),
                services: vec!["payments".into()],
            }],
            cadence: [None; 4],
            comms_approval: false,
            allow_self_approval: false,
            channel: None,
            templates: Default::default(),
        }
    }

    #[test]
    fn stored_text_is_escaped_and_times_show_in_both_zones() {
        let p = status_page();
        let at = Utc.with_ymd_and_hms(2026, 1, 15, 10, 5, 0).unwrap();
        let incident = PublicIncident {
            public_id: "abc".into(),
            title: "<b>bold</b>".into(),
            started_at: at,
            resolved_at: None,
            updates: vec![PublicUpdate {
                uuid: "u".into(),
                published_at: at,
                message: "<script>alert(1)</script> & \"><img src=x onerror=alert(1)>".into(),
                components: vec![ComponentImpact {
                    component: "card-payments".into(),
                    status: ComponentStatus::PartialOutage,
                }],
                last: false,
            }],
        };
        let html = page(&p, &page_view(&p, vec![incident], at));
        assert!(!html.contains("<script>") && !html.contains("<img src=x") && !html.contains("<b>bold"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;&gt;&lt;img"),
            "{html}"
        );
        assert!(html.contains("Acme &lt;status&gt;"));
        assert!(
            html.contains("logo.png&quot; onerror=&quot;x"),
            "attribute values escaped too"
        );
        assert!(html.contains("15 Jan 2026, 11:05 CET (10:05 UTC)"), "{html}");
        assert!(html.contains("datetime=\"2026-01-15T10:05:00Z\""));
        assert!(html.contains("Partial outage: Card payments"));
        assert!(html.contains("href=\"/status/incidents/abc\""));
        assert!(!html.contains("style="), "no inline style: the CSP forbids it");
    }
}
