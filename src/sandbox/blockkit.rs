//! Block Kit checks: the limits Slack enforces on message blocks and modal views.
//!
//! Why: Slack rejects a whole message or modal when one block breaks a limit, and the bot only
//! finds out in production (a card that never posts, a modal that never opens). Checking the same
//! limits here turns those into test failures. Error texts copy Slack's style:
//! `must be less than 151 characters [json-pointer:/blocks/0/text/text]`.
//!
//! Limits (Slack's Block Kit reference): 50 blocks per message, 100 per modal; modal title,
//! submit and close ≤ 24 chars; header ≤ 150; section text ≤ 3000, ≤ 10 fields of ≤ 2000; context
//! ≤ 10 elements; actions ≤ 25 elements; button text ≤ 75, value ≤ 2000; `action_id` and
//! `block_id` ≤ 255 and `block_id` unique; select options ≤ 100 with text ≤ 75; input label
//! ≤ 2000 with an element; `private_metadata` ≤ 3000; `initial_option(s)` among the `options`.

use std::collections::HashSet;

use serde_json::Value;

pub(crate) const MAX_MESSAGE_BLOCKS: usize = 50;
pub(crate) const MAX_MODAL_BLOCKS: usize = 100;

const BLOCK_TYPES: &[&str] = &[
    "section",
    "header",
    "divider",
    "image",
    "actions",
    "context",
    "input",
    "file",
    "video",
    "rich_text",
    "markdown",
    "table",
];

/// Interactive and input elements Slack knows.
const ELEMENT_TYPES: &[&str] = &[
    "button",
    "checkboxes",
    "datepicker",
    "datetimepicker",
    "email_text_input",
    "external_select",
    "file_input",
    "image",
    "multi_channels_select",
    "multi_conversations_select",
    "multi_external_select",
    "multi_static_select",
    "multi_users_select",
    "number_input",
    "overflow",
    "plain_text_input",
    "radio_buttons",
    "rich_text_input",
    "static_select",
    "channels_select",
    "conversations_select",
    "timepicker",
    "url_text_input",
    "users_select",
    "workflow_button",
];

/// Which surface the blocks are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    Message,
    Modal,
}

/// Checks a message's `blocks` array; returns one error per violation.
pub(crate) fn check_message_blocks(blocks: &Value) -> Vec<String> {
    let mut checker = Checker::default();
    checker.blocks(blocks, "/blocks", Surface::Message);
    checker.errors
}

/// Checks a `view` object (`views.open`/`push`/`update`, `response_action`); `pointer` is where
/// it sits in the request, e.g. `/view`.
pub(crate) fn check_view(view: &Value, pointer: &str) -> Vec<String> {
    let mut checker = Checker::default();
    checker.view(view, pointer);
    checker.errors
}

/// The `block_id`s of the input blocks in a view (valid keys for `response_action: errors`).
pub(crate) fn input_block_ids(blocks: &Value) -> Vec<String> {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "input")
        .filter_map(|b| b["block_id"].as_str().map(str::to_owned))
        .collect()
}

/// A button found in a message, as needed for a `block_actions` payload.
#[derive(Debug, Clone)]
pub(crate) struct FoundButton {
    pub block_id: String,
    pub text: Value,
}

/// Finds the button (or any element) with `action_id` in `actions` blocks and section accessories.
pub(crate) fn find_button(blocks: &Value, action_id: &str) -> Option<FoundButton> {
    for block in blocks.as_array().into_iter().flatten() {
        let elements = block["elements"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&block["accessory"]));
        for element in elements {
            if element["action_id"] == action_id {
                return Some(FoundButton {
                    block_id: block["block_id"].as_str().unwrap_or_default().to_owned(),
                    text: element["text"].clone(),
                });
            }
        }
    }
    None
}

/// Fills in the `block_id`s (and element `action_id`s) Slack generates when the app omits them.
pub(crate) fn fill_generated_ids(blocks: &mut Value) {
    let Some(blocks) = blocks.as_array_mut() else {
        return;
    };
    for block in blocks.iter_mut().filter(|b| b.is_object()) {
        if is_missing(block.get("block_id")) {
            block["block_id"] = Value::String(generated_id(4));
        }
        let mut fill = |element: &mut Value| {
            let interactive = element["type"]
                .as_str()
                .is_some_and(|t| ELEMENT_TYPES.contains(&t) && t != "image");
            if interactive && is_missing(element.get("action_id")) {
                element["action_id"] = Value::String(generated_id(5));
            }
        };
        if let Some(element) = block.get_mut("element") {
            fill(element);
        }
        if let Some(accessory) = block.get_mut("accessory") {
            fill(accessory);
        }
        if block["type"] == "actions" {
            if let Some(elements) = block.get_mut("elements").and_then(Value::as_array_mut) {
                elements.iter_mut().for_each(&mut fill);
            }
        }
    }
}

fn is_missing(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
}

/// A short mixed-case id like Slack's generated `block_id`s (`hspI`, `maBWU`).
fn generated_id(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn too_long(max: usize) -> String {
    format!("must be less than {} characters", max + 1)
}

/// How a text object may look at one place.
#[derive(Debug, Clone, Copy)]
struct TextRule {
    max: usize,
    plain_only: bool,
    required: bool,
}

impl TextRule {
    const fn plain(max: usize) -> Self {
        Self {
            max,
            plain_only: true,
            required: true,
        }
    }
    const fn any(max: usize) -> Self {
        Self {
            max,
            plain_only: false,
            required: true,
        }
    }
    const fn optional(self) -> Self {
        Self {
            required: false,
            ..self
        }
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<String>,
    block_ids: HashSet<String>,
}

impl Checker {
    fn error(&mut self, message: impl AsRef<str>, pointer: &str) {
        self.errors
            .push(format!("{} [json-pointer:{pointer}]", message.as_ref()));
    }

    fn view(&mut self, view: &Value, pointer: &str) {
        let Some(object) = view.as_object() else {
            self.error("must provide an object", pointer);
            return;
        };
        let kind = object.get("type").and_then(Value::as_str);
        match kind {
            Some("modal") | Some("home") => {}
            Some(other) => self.error(format!("unsupported view type `{other}`"), &format!("{pointer}/type")),
            None => self.error("must provide a string", &format!("{pointer}/type")),
        }
        let modal = kind == Some("modal");
        if modal {
            self.text(object.get("title"), &format!("{pointer}/title"), TextRule::plain(24));
            self.text(
                object.get("submit"),
                &format!("{pointer}/submit"),
                TextRule::plain(24).optional(),
            );
            self.text(
                object.get("close"),
                &format!("{pointer}/close"),
                TextRule::plain(24).optional(),
            );
        }
        self.string_max(
            object.get("private_metadata"),
            3000,
            &format!("{pointer}/private_metadata"),
        );
        self.string_max(object.get("callback_id"), 255, &format!("{pointer}/callback_id"));
        self.string_max(object.get("external_id"), 255, &format!("{pointer}/external_id"));
        match object.get("blocks") {
            Some(blocks) => self.blocks(blocks, &format!("{pointer}/blocks"), Surface::Modal),
            None => self.error("must provide an array", &format!("{pointer}/blocks")),
        }
        let has_input = object
            .get("blocks")
            .and_then(Value::as_array)
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "input"));
        let has_submit = object.get("submit").is_some_and(|s| !s.is_null());
        if modal && has_input && !has_submit {
            self.error(
                "must provide `submit` when the view contains input blocks",
                &format!("{pointer}/submit"),
            );
        }
    }

    fn blocks(&mut self, blocks: &Value, pointer: &str, surface: Surface) {
        let Some(array) = blocks.as_array() else {
            self.error("must provide an array", pointer);
            return;
        };
        let max = match surface {
            Surface::Message => MAX_MESSAGE_BLOCKS,
            Surface::Modal => MAX_MODAL_BLOCKS,
        };
        if array.len() > max {
            self.error(format!("no more than {max} items allowed"), pointer);
        }
        for (index, block) in array.iter().enumerate() {
            self.block(block, &format!("{pointer}/{index}"));
        }
    }

    fn block(&mut self, block: &Value, pointer: &str) {
        let Some(object) = block.as_object() else {
            self.error("must provide an object", pointer);
            return;
        };
        if let Some(block_id) = object.get("block_id") {
            match block_id.as_str() {
                Some(id) if id.chars().count() > 255 => self.error(too_long(255), &format!("{pointer}/block_id")),
                Some(id) => {
                    if !self.block_ids.insert(id.to_owned()) {
                        self.error(format!("duplicate block_id `{id}`"), &format!("{pointer}/block_id"));
                    }
                }
                None => self.error("must be a string", &format!("{pointer}/block_id")),
            }
        }
        let at = |field: &str| format!("{pointer}/{field}");
        let kind = object.get("type").and_then(Value::as_str);
        match kind {
            Some("section") => {
                self.text(object.get("text"), &at("text"), TextRule::any(3000).optional());
                match object.get("fields") {
                    Some(Value::Array(fields)) => {
                        if fields.len() > 10 {
                            self.error("no more than 10 items allowed", &at("fields"));
                        }
                        for (index, field) in fields.iter().enumerate() {
                            self.text(Some(field), &format!("{pointer}/fields/{index}"), TextRule::any(2000));
                        }
                    }
                    Some(_) => self.error("must provide an array", &at("fields")),
                    None => {}
                }
                if object.get("text").is_none() && object.get("fields").is_none() {
                    self.error("must provide `text` or `fields`", pointer);
                }
                if let Some(accessory) = object.get("accessory") {
                    self.element(accessory, &at("accessory"), &mut HashSet::new());
                }
            }
            Some("header") => self.text(object.get("text"), &at("text"), TextRule::plain(150)),
            Some("divider") => {}
            Some("image") => {
                if object.get("image_url").is_none() && object.get("slack_file").is_none() {
                    self.error("must provide `image_url` or `slack_file`", pointer);
                }
                self.string_max(object.get("image_url"), 3000, &at("image_url"));
                self.required_string(object.get("alt_text"), 2000, &at("alt_text"));
                self.text(object.get("title"), &at("title"), TextRule::plain(2000).optional());
            }
            Some("actions") => {
                let mut action_ids = HashSet::new();
                self.elements(object.get("elements"), &at("elements"), 25, |checker, element, ptr| {
                    checker.element(element, ptr, &mut action_ids)
                });
            }
            Some("context") => {
                self.elements(
                    object.get("elements"),
                    &at("elements"),
                    10,
                    |checker, element, ptr| match element["type"].as_str() {
                        Some("image") => {
                            checker.required_string(element.get("alt_text"), 2000, &format!("{ptr}/alt_text"))
                        }
                        Some("plain_text") | Some("mrkdwn") => checker.text(Some(element), ptr, TextRule::any(3000)),
                        _ => checker.error("must be an image element or a text object", ptr),
                    },
                );
            }
            Some("input") => {
                self.text(object.get("label"), &at("label"), TextRule::plain(2000));
                self.text(object.get("hint"), &at("hint"), TextRule::plain(2000).optional());
                match object.get("element") {
                    Some(element) => self.element(element, &at("element"), &mut HashSet::new()),
                    None => self.error("must provide an object", &at("element")),
                }
            }
            Some("markdown") => self.required_string(object.get("text"), 12_000, &at("text")),
            Some("rich_text") | Some("table") => {
                let field = if kind == Some("table") { "rows" } else { "elements" };
                if !object.get(field).is_some_and(Value::is_array) {
                    self.error("must provide an array", &at(field));
                }
            }
            Some(other) if BLOCK_TYPES.contains(&other) => {}
            Some(other) => self.error(format!("unsupported block type `{other}`"), &at("type")),
            None => self.error("must provide a string", &at("type")),
        }
    }

    /// An `elements` array with `1..=max` entries, each checked by `check`.
    fn elements(
        &mut self,
        elements: Option<&Value>,
        pointer: &str,
        max: usize,
        mut check: impl FnMut(&mut Self, &Value, &str),
    ) {
        let Some(array) = elements.and_then(Value::as_array) else {
            self.error("must provide an array", pointer);
            return;
        };
        if array.is_empty() {
            self.error("must provide at least 1 item", pointer);
        }
        if array.len() > max {
            self.error(format!("no more than {max} items allowed"), pointer);
        }
        for (index, element) in array.iter().enumerate() {
            check(self, element, &format!("{pointer}/{index}"));
        }
    }

    fn element(&mut self, element: &Value, pointer: &str, action_ids: &mut HashSet<String>) {
        let Some(object) = element.as_object() else {
            self.error("must provide an object", pointer);
            return;
        };
        let at = |field: &str| format!("{pointer}/{field}");
        if let Some(action_id) = object.get("action_id") {
            match action_id.as_str() {
                Some(id) if id.chars().count() > 255 => self.error(too_long(255), &at("action_id")),
                Some(id) => {
                    if !action_ids.insert(id.to_owned()) {
                        self.error(format!("duplicate action_id `{id}`"), &at("action_id"));
                    }
                }
                None => self.error("must be a string", &at("action_id")),
            }
        }
        self.text(
            object.get("placeholder"),
            &at("placeholder"),
            TextRule::plain(150).optional(),
        );
        match object.get("type").and_then(Value::as_str) {
            Some("button") => {
                self.text(object.get("text"), &at("text"), TextRule::plain(75));
                self.string_max(object.get("value"), 2000, &at("value"));
                self.string_max(object.get("url"), 3000, &at("url"));
                if let Some(style) = object.get("style") {
                    if style != "primary" && style != "danger" {
                        self.error("must be `primary` or `danger`", &at("style"));
                    }
                }
            }
            Some("static_select") | Some("multi_static_select") => {
                let options = object.get("options");
                let groups = object.get("option_groups");
                match (options, groups) {
                    (Some(options), None) => self.options(options, &at("options"), 100, TextRule::plain(75)),
                    (None, Some(Value::Array(groups))) => {
                        if groups.len() > 100 {
                            self.error("no more than 100 items allowed", &at("option_groups"));
                        }
                        for (index, group) in groups.iter().enumerate() {
                            let group_at = format!("{pointer}/option_groups/{index}");
                            self.text(group.get("label"), &format!("{group_at}/label"), TextRule::plain(75));
                            match group.get("options") {
                                Some(options) => {
                                    self.options(options, &format!("{group_at}/options"), 100, TextRule::plain(75))
                                }
                                None => self.error("must provide an array", &format!("{group_at}/options")),
                            }
                        }
                    }
                    _ => self.error("must provide exactly one of `options` or `option_groups`", pointer),
                }
            }
            Some("overflow") => match object.get("options") {
                Some(options) => self.options(options, &at("options"), 5, TextRule::plain(75)),
                None => self.error("must provide an array", &at("options")),
            },
            Some("checkboxes") | Some("radio_buttons") => match object.get("options") {
                Some(options) => self.options(options, &at("options"), 10, TextRule::any(75)),
                None => self.error("must provide an array", &at("options")),
            },
            Some("plain_text_input") => {
                self.string_max(object.get("initial_value"), 3000, &at("initial_value"));
                for bound in ["min_length", "max_length"] {
                    if let Some(value) = object.get(bound) {
                        if value.as_u64().is_none_or(|n| n > 3000) {
                            self.error("must be a number between 0 and 3000", &at(bound));
                        }
                    }
                }
            }
            Some(other) if ELEMENT_TYPES.contains(&other) => {}
            Some(other) => self.error(format!("unsupported element type `{other}`"), &at("type")),
            None => self.error("must provide a string", &at("type")),
        }
        self.initial_options(object, pointer);
    }

    /// Slack refuses a select, checkbox or radio group whose `initial_option(s)` is not one of
    /// its `options` (same `value` and `text`), e.g. a current status the form does not offer.
    fn initial_options(&mut self, object: &serde_json::Map<String, Value>, pointer: &str) {
        let offered: Vec<&Value> = match object.get("option_groups").and_then(Value::as_array) {
            Some(groups) => groups
                .iter()
                .filter_map(|g| g.get("options").and_then(Value::as_array))
                .flatten()
                .collect(),
            None => object
                .get("options")
                .and_then(Value::as_array)
                .map(|o| o.iter().collect())
                .unwrap_or_default(),
        };
        let same = |a: &Value, b: &Value| a.get("value") == b.get("value") && a.get("text") == b.get("text");
        if let Some(initial) = object.get("initial_option") {
            if !offered.iter().any(|o| same(o, initial)) {
                self.error(
                    "must match one of the provided options",
                    &format!("{pointer}/initial_option"),
                );
            }
        }
        if let Some(initials) = object.get("initial_options") {
            match initials.as_array() {
                Some(initials) => {
                    for (index, initial) in initials.iter().enumerate() {
                        if !offered.iter().any(|o| same(o, initial)) {
                            self.error(
                                "must match one of the provided options",
                                &format!("{pointer}/initial_options/{index}"),
                            );
                        }
                    }
                }
                None => self.error("must provide an array", &format!("{pointer}/initial_options")),
            }
        }
    }

    fn options(&mut self, options: &Value, pointer: &str, max: usize, text: TextRule) {
        let Some(array) = options.as_array() else {
            self.error("must provide an array", pointer);
            return;
        };
        if array.len() > max {
            self.error(format!("no more than {max} items allowed"), pointer);
        }
        for (index, option) in array.iter().enumerate() {
            let at = format!("{pointer}/{index}");
            self.text(option.get("text"), &format!("{at}/text"), text);
            self.required_string(option.get("value"), 150, &format!("{at}/value"));
            self.text(
                option.get("description"),
                &format!("{at}/description"),
                TextRule::plain(75).optional(),
            );
        }
    }

    /// A text object: `{"type": "plain_text" | "mrkdwn", "text": "..."}`.
    fn text(&mut self, text: Option<&Value>, pointer: &str, rule: TextRule) {
        let text = match text {
            None | Some(Value::Null) => {
                if rule.required {
                    self.error("must provide an object", pointer);
                }
                return;
            }
            Some(text) => text,
        };
        let Some(object) = text.as_object() else {
            self.error("must provide an object", pointer);
            return;
        };
        match object.get("type").and_then(Value::as_str) {
            Some("plain_text") => {}
            Some("mrkdwn") if !rule.plain_only => {}
            Some("mrkdwn") => self.error("must be `plain_text`", &format!("{pointer}/type")),
            _ => self.error("must be `plain_text` or `mrkdwn`", &format!("{pointer}/type")),
        }
        match object.get("text").and_then(Value::as_str) {
            Some("") => self.error("must be more than 0 characters", &format!("{pointer}/text")),
            Some(s) if s.chars().count() > rule.max => self.error(too_long(rule.max), &format!("{pointer}/text")),
            Some(_) => {}
            None => self.error("must provide a string", &format!("{pointer}/text")),
        }
    }

    fn string_max(&mut self, value: Option<&Value>, max: usize, pointer: &str) {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.chars().count() > max => self.error(too_long(max), pointer),
            Some(Value::String(_)) => {}
            Some(_) => self.error("must be a string", pointer),
        }
    }

    fn required_string(&mut self, value: Option<&Value>, max: usize, pointer: &str) {
        match value {
            None | Some(Value::Null) => self.error("must provide a string", pointer),
            Some(Value::String(s)) if s.is_empty() => self.error("must be more than 0 characters", pointer),
            other => self.string_max(other, max, pointer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(text: &str) -> Value {
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
    }

    #[test]
    fn accepts_a_typical_message() {
        let blocks = json!([
            { "type": "header", "text": { "type": "plain_text", "text": "INC-1 Payments down" } },
            section("*Severity* SEV1"),
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": "declared by <@U0ALICE>" } ] },
            { "type": "actions", "block_id": "act", "elements": [
                { "type": "button", "action_id": "ack", "text": { "type": "plain_text", "text": "Ack" }, "value": "1", "style": "primary" }
            ] },
            { "type": "divider" }
        ]);
        assert_eq!(check_message_blocks(&blocks), Vec::<String>::new());
    }

    #[test]
    fn enforces_limits_with_json_pointers() {
        let blocks = json!([
            { "type": "header", "text": { "type": "plain_text", "text": "h".repeat(151) } },
            section(&"s".repeat(3001)),
            { "type": "section", "block_id": "x", "text": { "type": "mrkdwn", "text": "a" } },
            { "type": "divider", "block_id": "x" },
            { "type": "actions", "elements": [
                { "type": "button", "action_id": "a".repeat(256), "text": { "type": "plain_text", "text": "b".repeat(76) }, "value": "v".repeat(2001) }
            ] },
            { "type": "carousel" }
        ]);
        let errors = check_message_blocks(&blocks);
        let expected = [
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
            "must be less than 3001 characters [json-pointer:/blocks/1/text/text]",
            "duplicate block_id `x` [json-pointer:/blocks/3/block_id]",
            "must be less than 256 characters [json-pointer:/blocks/4/elements/0/action_id]",
            "must be less than 76 characters [json-pointer:/blocks/4/elements/0/text/text]",
            "must be less than 2001 characters [json-pointer:/blocks/4/elements/0/value]",
            "unsupported block type `carousel` [json-pointer:/blocks/5/type]",
        ];
        for e in expected {
            assert!(errors.iter().any(|got| got == e), "missing {e:?} in {errors:#?}");
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn counts_blocks_per_surface() {
        let many = Value::Array((0..51).map(|_| json!({ "type": "divider" })).collect());
        assert_eq!(
            check_message_blocks(&many),
            vec!["no more than 50 items allowed [json-pointer:/blocks]".to_owned()]
        );
        let modal = json!({ "type": "modal", "title": { "type": "plain_text", "text": "t" }, "blocks": many });
        assert!(check_view(&modal, "/view").is_empty());
    }

    #[test]
    fn checks_modal_fields() {
        let modal = json!({
            "type": "modal",
            "title": { "type": "plain_text", "text": "Declare a brand new incident" },
            "close": { "type": "mrkdwn", "text": "Cancel" },
            "private_metadata": "m".repeat(3001),
            "blocks": [
                { "type": "input", "block_id": "title", "label": { "type": "plain_text", "text": "Title" } },
                { "type": "input", "block_id": "sev", "label": { "type": "plain_text", "text": "Severity" },
                  "element": { "type": "static_select", "action_id": "sev",
                               "options": (0..101).map(|i| json!({ "text": { "type": "plain_text", "text": format!("o{i}") }, "value": format!("{i}") })).collect::<Vec<_>>() } }
            ]
        });
        let errors = check_view(&modal, "/view");
        let expected = [
            "must be less than 25 characters [json-pointer:/view/title/text]",
            "must be `plain_text` [json-pointer:/view/close/type]",
            "must be less than 3001 characters [json-pointer:/view/private_metadata]",
            "must provide an object [json-pointer:/view/blocks/0/element]",
            "no more than 100 items allowed [json-pointer:/view/blocks/1/element/options]",
            "must provide `submit` when the view contains input blocks [json-pointer:/view/submit]",
        ];
        for e in expected {
            assert!(errors.iter().any(|got| got == e), "missing {e:?} in {errors:#?}");
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn initial_options_must_be_offered() {
        let option = |v: &str| json!({ "text": { "type": "plain_text", "text": v }, "value": v });
        let modal = |element: Value| {
            json!({ "type": "modal", "title": { "type": "plain_text", "text": "t" },
                    "submit": { "type": "plain_text", "text": "Save" },
                    "blocks": [{ "type": "input", "block_id": "b", "label": { "type": "plain_text", "text": "L" },
                                 "element": element }] })
        };
        let ok = modal(json!({ "type": "static_select", "action_id": "s",
                               "options": [option("open"), option("resolved")], "initial_option": option("open") }));
        assert_eq!(check_view(&ok, "/view"), Vec::<String>::new());
        let closed = modal(json!({ "type": "static_select", "action_id": "s",
                                   "options": [option("open"), option("resolved")], "initial_option": option("closed") }));
        assert_eq!(
            check_view(&closed, "/view"),
            ["must match one of the provided options [json-pointer:/view/blocks/0/element/initial_option]"]
        );
        let relabelled = modal(
            json!({ "type": "checkboxes", "action_id": "c", "options": [option("a")],
            "initial_options": [{ "text": { "type": "plain_text", "text": "A" }, "value": "a" }] }),
        );
        assert_eq!(
            check_view(&relabelled, "/view"),
            ["must match one of the provided options [json-pointer:/view/blocks/0/element/initial_options/0]"]
        );
    }

    #[test]
    fn fills_ids_like_slack() {
        let mut blocks = json!([
            { "type": "input", "label": { "type": "plain_text", "text": "L" }, "element": { "type": "plain_text_input" } },
            { "type": "divider", "block_id": "keep" }
        ]);
        fill_generated_ids(&mut blocks);
        assert_eq!(blocks[0]["block_id"].as_str().map(str::len), Some(4));
        assert_eq!(blocks[0]["element"]["action_id"].as_str().map(str::len), Some(5));
        assert_eq!(blocks[1]["block_id"], "keep");
    }
}
