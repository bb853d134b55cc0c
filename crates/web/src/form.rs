//! A form generated from a tool's input schema. Every field carries its
//! JSON path (`data-path`, a JSON array of property names) and its kind
//! (`data-kind`), from which the page's script builds the arguments:
//! required fields, enums as selects, numbers and integers, booleans,
//! arrays of scalars (one item a line), nested objects as fieldsets, and a
//! JSON text area for anything else. Every name, title and description
//! from the schema is text (escaped by the template engine).

use maud::{Markup, html};
use serde_json::{Map, Value};

/// Nested objects deeper than this get a JSON text area.
const MAX_DEPTH: usize = 3;
/// Most fields rendered for one tool; the rest go into one JSON area.
const MAX_FIELDS: usize = 200;

struct Counter(usize);

/// The form's fields for `schema` (an object schema).
pub fn fields(schema: &Map<String, Value>) -> Markup {
    let mut counter = Counter(0);
    object_fields(schema, &[], 0, &mut counter)
}

fn object_fields(
    schema: &Map<String, Value>,
    path: &[String],
    depth: usize,
    counter: &mut Counter,
) -> Markup {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    // Required fields first, then the rest, each in the schema's order.
    let mut ordered: Vec<(&String, &Value)> = properties.iter().collect();
    ordered.sort_by_key(|(name, _)| !required.contains(&name.as_str()));
    html! {
        @for (name, property) in ordered {
            @let mut child = path.to_vec();
            @let () = child.push(name.clone());
            (field(name, property, required.contains(&name.as_str()), &child, depth, counter))
        }
    }
}

/// The type a schema names, the first non-null one of a list.
fn kind_of(schema: &Map<String, Value>) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(kind)) => Some(kind),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null"),
        _ => None,
    }
}

fn is_scalar(kind: Option<&str>) -> bool {
    matches!(kind, Some("string" | "integer" | "number" | "boolean"))
}

fn field(
    name: &str,
    property: &Value,
    required: bool,
    path: &[String],
    depth: usize,
    counter: &mut Counter,
) -> Markup {
    let empty = Map::new();
    let schema = property.as_object().unwrap_or(&empty);
    counter.0 += 1;
    let id = format!("f{}", counter.0);
    let path_json = serde_json::to_string(path).unwrap_or_default();
    let description = schema.get("description").and_then(Value::as_str);
    let title = schema.get("title").and_then(Value::as_str).unwrap_or(name);
    let default = schema.get("default");
    let kind = kind_of(schema);
    let label = html! {
        label for=(id) {
            (title)
            @if required { " " abbr title="required" { "*" } }
            @if title != name { " " code { (name) } }
        }
        @if let Some(description) = description {
            small.hint { (description) }
        }
    };
    let too_many = counter.0 > MAX_FIELDS;
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !too_many
    {
        return html! {
            div.field {
                (label)
                select id=(id) data-path=(path_json) data-kind="enum" required[required] {
                    @if !required || default.is_none() { option value="" { "—" } }
                    @for choice in choices {
                        @let text = match choice { Value::String(text) => text.clone(), other => other.to_string() };
                        option value=(choice.to_string()) selected[default == Some(choice)] { (text) }
                    }
                }
            }
        };
    }
    match kind {
        _ if too_many => json_area(&id, &path_json, label, required, default),
        Some("boolean") if required => html! {
            div.field.check {
                input type="checkbox" id=(id) data-path=(path_json) data-kind="boolean"
                    checked[default == Some(&Value::Bool(true))];
                (label)
            }
        },
        Some("boolean") => html! {
            div.field {
                (label)
                select id=(id) data-path=(path_json) data-kind="enum" {
                    option value="" { "— (default" @if let Some(default) = default { ": " (default.to_string()) } ")" }
                    option value="true" { "true" }
                    option value="false" { "false" }
                }
            }
        },
        Some(kind @ ("integer" | "number")) => html! {
            div.field {
                (label)
                input type="number" id=(id) data-path=(path_json) data-kind=(kind)
                    step=(if kind == "integer" { "1" } else { "any" })
                    min=[schema.get("minimum").map(Value::to_string)]
                    max=[schema.get("maximum").map(Value::to_string)]
                    placeholder=[default.map(Value::to_string)]
                    required[required];
            }
        },
        Some("string") => {
            let long = schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_none_or(|max| max > 200)
                && matches!(name, "content" | "text" | "body" | "query" | "prompt");
            html! {
                div.field {
                    (label)
                    @if long {
                        textarea id=(id) data-path=(path_json) data-kind="string" rows="4" required[required]
                            placeholder=[default.and_then(Value::as_str)] {}
                    } @else {
                        input type="text" id=(id) data-path=(path_json) data-kind="string"
                            maxlength=[schema.get("maxLength").and_then(Value::as_u64)]
                            placeholder=[default.and_then(Value::as_str)]
                            required[required];
                    }
                }
            }
        }
        Some("array")
            if schema
                .get("items")
                .and_then(Value::as_object)
                .is_some_and(|items| is_scalar(kind_of(items))) =>
        {
            let items = schema
                .get("items")
                .and_then(Value::as_object)
                .and_then(kind_of)
                .unwrap_or("string");
            html! {
                div.field {
                    (label)
                    small.hint { "One " (items) " a line." }
                    textarea id=(id) data-path=(path_json) data-kind="array" data-items=(items) rows="3" required[required] {}
                }
            }
        }
        Some("object") if depth < MAX_DEPTH && schema.contains_key("properties") => html! {
            fieldset.field data-path=(path_json) data-kind="object" {
                legend { (title) @if required { " " abbr title="required" { "*" } } }
                @if let Some(description) = description { small.hint { (description) } }
                (object_fields(schema, path, depth + 1, counter))
            }
        },
        _ => json_area(&id, &path_json, label, required, default),
    }
}

fn json_area(
    id: &str,
    path_json: &str,
    label: Markup,
    required: bool,
    default: Option<&Value>,
) -> Markup {
    html! {
        div.field {
            (label)
            small.hint { "JSON." }
            textarea id=(id) data-path=(path_json) data-kind="json" rows="3" required[required]
                placeholder=[default.map(Value::to_string)] {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_of_field_is_generated_and_names_are_escaped() {
        let schema = json!({
            "type": "object",
            "required": ["path"],
            "properties": {
                "path": {"type": "string", "description": "<script>alert(1)</script>"},
                "mode": {"enum": ["a", "b"]},
                "limit": {"type": "integer", "minimum": 1},
                "ratio": {"type": "number"},
                "recursive": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "options": {"type": "object", "properties": {"deep": {"type": "boolean"}}},
                "anything": {}
            }
        });
        let markup = fields(schema.as_object().expect("object")).into_string();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"));
        assert!(markup.contains(r#"data-kind="enum""#));
        assert!(markup.contains(r#"data-kind="integer""#));
        assert!(markup.contains(r#"data-kind="number""#));
        assert!(markup.contains(r#"data-kind="array""#));
        assert!(markup.contains(r#"data-kind="object""#));
        assert!(markup.contains(r#"data-kind="json""#));
        assert!(markup.contains(r#"data-path="[&quot;options&quot;,&quot;deep&quot;]""#));
        assert!(markup.contains("required"));
    }
}
