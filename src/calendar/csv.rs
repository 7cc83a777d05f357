//! Bulk import and export of changes as CSV (a CMDB or ticket export): a header row, one
//! change a line. Import checks every row first and reports each bad one by its line number;
//! the caller stores nothing unless every row is good.

use super::{ChangeDraft, NewChange, PlannedChange};
use crate::incident::model::UserId;

/// The columns, in export order; import needs `kind,title,services,start,end,owner,risk` and
/// takes the rest when present (any order, any case).
pub const COLUMNS: [&str; 12] = [
    "number",
    "kind",
    "title",
    "services",
    "start",
    "end",
    "owner",
    "risk",
    "customer_facing",
    "vendor",
    "link",
    "state",
];
const REQUIRED: [&str; 7] = ["kind", "title", "services", "start", "end", "owner", "risk"];
const OPTIONAL: [&str; 4] = ["customer_facing", "vendor", "link", "override_reason"];

/// Reads a CSV file into checked changes, or every problem as `line N: field: message`.
pub fn import(text: &str, catalogue: &[String], tz: chrono_tz::Tz) -> Result<Vec<NewChange>, Vec<String>> {
    let mut reader = ::csv::ReaderBuilder::new()
        .trim(::csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
        Err(e) => return Err(vec![format!("line 1: cannot read the header row: {e}")]),
    };
    if let Some(unknown) = header
        .iter()
        .find(|h| !REQUIRED.contains(&h.as_str()) && !OPTIONAL.contains(&h.as_str()) && !COLUMNS.contains(&h.as_str()))
    {
        return Err(vec![format!(
            "line 1: unknown column `{unknown}`; columns are {} (and optionally {})",
            REQUIRED.join(","),
            OPTIONAL.join(",")
        )]);
    }
    if let Some(missing) = REQUIRED.iter().find(|r| !header.iter().any(|h| h == *r)) {
        return Err(vec![format!("line 1: the header has no `{missing}` column")]);
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let get = |name: &str| col(name).and_then(|i| record.get(i)).unwrap_or_default().to_string();
        let mut row_problems: Vec<String> = Vec::new();
        let start = super::parse_local(&get("start"), tz, false)
            .map_err(|e| row_problems.push(format!("line {line}: start: {e}")))
            .ok();
        let end = super::parse_local(&get("end"), tz, true)
            .map_err(|e| row_problems.push(format!("line {line}: end: {e}")))
            .ok();
        let owner = UserId::parse(get("owner").trim())
            .map_err(|_| {
                row_problems.push(format!(
                    "line {line}: owner: `{}` is not a Slack user id (it looks like U0123ABCD)",
                    crate::incident::model::truncate(&get("owner"), 30)
                ))
            })
            .ok();
        let customer_facing = match get("customer_facing").to_ascii_lowercase().as_str() {
            "" | "no" | "false" | "n" | "0" => false,
            "yes" | "true" | "y" | "1" => true,
            other => {
                row_problems.push(format!("line {line}: customer_facing: `{other}` is not yes or no"));
                false
            }
        };
        let draft = ChangeDraft {
            kind: Some(get("kind")).filter(|k| !k.is_empty()),
            title: get("title"),
            services: get("services")
                .split([';', '|', ','])
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            starts_at: start,
            ends_at: end,
            owner,
            risk: Some(get("risk")).filter(|r| !r.is_empty()),
            customer_facing,
            vendor: Some(get("vendor")),
            link: Some(get("link")),
            override_reason: Some(get("override_reason")),
        };
        match draft.validate(catalogue) {
            Ok(change) if row_problems.is_empty() => good.push(change),
            Ok(_) => {}
            Err(errors) => {
                for (field, message) in errors {
                    let field = if field == "override" { "override_reason" } else { field };
                    // Missing start/end/owner were said once above, more precisely.
                    if !row_problems
                        .iter()
                        .any(|p| p.starts_with(&format!("line {line}: {field}:")))
                    {
                        row_problems.push(format!("line {line}: {field}: {message}"));
                    }
                }
            }
        }
        problems.extend(row_problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if good.is_empty() {
        return Err(vec!["the file has a header but no changes".into()]);
    }
    Ok(good)
}

/// The changes as CSV, [`COLUMNS`] first, times in UTC (RFC 3339).
pub fn export(changes: &[PlannedChange]) -> String {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(COLUMNS);
    for c in changes {
        let _ = writer.write_record([
            c.number.to_string(),
            c.kind.as_str().to_string(),
            c.title.clone(),
            c.services.join(";"),
            c.starts_at.to_rfc3339(),
            c.ends_at.to_rfc3339(),
            c.owner.to_string(),
            c.risk.as_str().to_string(),
            if c.customer_facing { "yes" } else { "no" }.to_string(),
            c.vendor.clone().unwrap_or_default(),
            c.link.clone().unwrap_or_default(),
            c.state.as_str().to_string(),
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Vec<String> {
        ["payments", "checkout"].map(String::from).to_vec()
    }

    #[test]
    fn good_rows_import() {
        let text = "kind,title,services,start,end,owner,risk,vendor\n\
                    deployment,\"payments-api v42, canary\",payments,2026-12-01T09:00,2026-12-01T10:00,U0CAROL,low,\n\
                    vendor maintenance,Acquirer window,payments;checkout,2026-12-02,2026-12-02,U0CAROL,high,Globex\n";
        let changes = import(text, &catalogue(), chrono_tz::UTC).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].title, "payments-api v42, canary");
        assert_eq!(changes[1].services.len(), 2);
        assert_eq!(changes[1].ends_at - changes[1].starts_at, chrono::Duration::hours(24));
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_nothing_is_returned() {
        let text = "kind,title,services,start,end,owner,risk\n\
                    deployment,ok,payments,2026-12-01T09:00,2026-12-01T10:00,U0CAROL,low\n\
                    deployment,bad date,payments,2026-13-01,2026-12-01T10:00,U0CAROL,low\n\
                    deployment,bad service,billing,2026-12-01T09:00,2026-12-01T10:00,U0CAROL,low\n";
        let problems = import(text, &catalogue(), chrono_tz::UTC).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 3: start:"), "{problems:?}");
        assert!(problems[1].starts_with("line 4: services:"), "{problems:?}");
    }

    #[test]
    fn a_missing_column_is_refused() {
        let problems = import("kind,title\nx,y\n", &catalogue(), chrono_tz::UTC).unwrap_err();
        assert!(problems[0].contains("`services`"), "{problems:?}");
    }
}
