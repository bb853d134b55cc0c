//! Templating without eval: `minijinja` in a sandbox. No loader (no file
//! access), no function that reads the environment, strict undefined (a
//! misspelt name is an error, not an empty string), a fuel limit (a loop
//! cannot run forever) and a recursion limit.
//!
//! **Data is never code.** A template is the text written in the workflow
//! file, compiled from that text only. Values (inputs, step outputs, HTTP
//! bodies) reach it as data in the scope and are inserted as they are; a
//! rendered string is never rendered again, so `{{ … }}` inside a value
//! stays those characters.
//!
//! A string that is one expression (`"{{ steps.read.content }}"`) renders
//! to the expression's value with its JSON type (a list stays a list);
//! any other string renders to text; a string without `{{`/`{%` is taken
//! as it is.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one render may execute.
pub const FUEL: u64 = 100_000;
/// Nesting depth of one render.
pub const RECURSION_LIMIT: usize = 64;

/// Why a template cannot be compiled or rendered.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// The line within the template, when minijinja knows it.
    pub line: Option<usize>,
}

impl TemplateError {
    fn of(error: &minijinja::Error, source: &str) -> TemplateError {
        let mut message = error.kind().to_string();
        if let Some(detail) = error.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        message.push_str(" in ");
        message.push_str(&proto::text::bounded(source, 120));
        TemplateError {
            message,
            line: error.line(),
        }
    }
}

/// The sandboxed environment; one per engine.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Templates {
        Templates::new()
    }
}

/// Whether the string is exactly one `{{ expression }}`.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

/// Whether the string is a template (rendering it evaluates something).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Whether rendering `value` would evaluate anything (a string in it is a
/// template): when not, rendering gives `value` itself and needs no scope.
pub fn has_template(value: &Value) -> bool {
    match value {
        Value::String(text) => is_template(text),
        Value::Array(items) => items.iter().any(has_template),
        Value::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

impl Templates {
    pub fn new() -> Templates {
        // The built-in filters, tests and globals (range, dict, …); no
        // loader is ever set, so include/import/extends find nothing.
        let mut env = Environment::new();
        env.add_filter("tojson", tojson);
        env.add_filter("fromjson", fromjson);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        // No HTML escaping: the output is data, not a page.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Templates { env }
    }

    /// Compiles every template inside `value` (strings, nested), to find
    /// syntax errors at load.
    pub fn check_value(&self, value: &Value) -> Result<(), TemplateError> {
        match value {
            Value::String(text) => self.check(text),
            Value::Array(items) => items.iter().try_for_each(|item| self.check_value(item)),
            Value::Object(map) => map.values().try_for_each(|item| self.check_value(item)),
            _ => Ok(()),
        }
    }

    /// Compiles one template string.
    pub fn check(&self, text: &str) -> Result<(), TemplateError> {
        if !is_template(text) {
            return Ok(());
        }
        if let Some(expression) = single_expression(text) {
            return self
                .env
                .compile_expression(expression)
                .map(drop)
                .map_err(|error| TemplateError::of(&error, text));
        }
        self.env
            .template_from_str(text)
            .map(drop)
            .map_err(|error| TemplateError::of(&error, text))
    }

    /// Compiles a condition: `{{ expr }}` or a bare expression.
    pub fn check_expression(&self, text: &str) -> Result<(), TemplateError> {
        let expression = single_expression(text).unwrap_or(text);
        self.env
            .compile_expression(expression)
            .map(drop)
            .map_err(|error| TemplateError::of(&error, text))
    }

    /// Renders every template inside `value` over `scope`.
    pub fn render_value(
        &self,
        value: &Value,
        scope: &minijinja::Value,
    ) -> Result<Value, TemplateError> {
        match value {
            Value::String(text) => self.render(text, scope),
            Value::Array(items) => items
                .iter()
                .map(|item| self.render_value(item, scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => map
                .iter()
                .map(|(key, item)| Ok((key.clone(), self.render_value(item, scope)?)))
                .collect::<Result<serde_json::Map<_, _>, _>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    /// Renders one string: one expression keeps its type, other templates
    /// give text, plain text is itself.
    pub fn render(&self, text: &str, scope: &minijinja::Value) -> Result<Value, TemplateError> {
        if !is_template(text) {
            return Ok(Value::String(text.to_owned()));
        }
        if let Some(expression) = single_expression(text) {
            return self.evaluate(expression, text, scope);
        }
        let template = self
            .env
            .template_from_str(text)
            .map_err(|error| TemplateError::of(&error, text))?;
        template
            .render(scope)
            .map(Value::String)
            .map_err(|error| TemplateError::of(&error, text))
    }

    /// Renders a string template to text (a non-string value as JSON).
    pub fn render_text(
        &self,
        text: &str,
        scope: &minijinja::Value,
    ) -> Result<String, TemplateError> {
        Ok(match self.render(text, scope)? {
            Value::String(text) => text,
            other => other.to_string(),
        })
    }

    /// Evaluates a condition (`{{ expr }}` or a bare expression) to its truth.
    pub fn truth(&self, text: &str, scope: &minijinja::Value) -> Result<bool, TemplateError> {
        let expression = single_expression(text).unwrap_or(text);
        let compiled = self
            .env
            .compile_expression(expression)
            .map_err(|error| TemplateError::of(&error, text))?;
        compiled
            .eval(scope)
            .map_err(|error| TemplateError::of(&error, text))
            .and_then(|value| {
                if value.is_undefined() {
                    Err(TemplateError {
                        message: format!(
                            "undefined value in the condition {}",
                            proto::text::echo(text)
                        ),
                        line: None,
                    })
                } else {
                    Ok(value.is_true())
                }
            })
    }

    fn evaluate(
        &self,
        expression: &str,
        source: &str,
        scope: &minijinja::Value,
    ) -> Result<Value, TemplateError> {
        let compiled = self
            .env
            .compile_expression(expression)
            .map_err(|error| TemplateError::of(&error, source))?;
        let value = compiled
            .eval(scope)
            .map_err(|error| TemplateError::of(&error, source))?;
        if value.is_undefined() {
            return Err(TemplateError {
                message: format!(
                    "undefined value: {} names nothing in scope (inputs, context, steps, item, result, error)",
                    proto::text::echo(source)
                ),
                line: None,
            });
        }
        serde_json::to_value(&value).map_err(|error| TemplateError {
            message: format!(
                "the value of {} is not JSON: {error}",
                proto::text::echo(source)
            ),
            line: None,
        })
    }
}

/// The scope of a render: JSON data, handed over as data.
pub fn scope(value: &Value) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

fn tojson(value: minijinja::Value) -> Result<String, minijinja::Error> {
    serde_json::to_string(&value).map_err(|error| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, error.to_string())
    })
}

fn fromjson(text: &str) -> Result<minijinja::Value, minijinja::Error> {
    serde_json::from_str::<Value>(text)
        .map(|value| minijinja::Value::from(minijinja::value::Serde(&value)))
        .map_err(|error| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, error.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_expression_keeps_its_type_and_text_renders_to_text() {
        let templates = Templates::new();
        let scope = scope(&json!({"inputs": {"n": 3, "list": [1, 2]}, "context": {}}));
        assert_eq!(
            templates.render("{{ inputs.list }}", &scope).unwrap(),
            json!([1, 2])
        );
        assert_eq!(
            templates.render("n={{ inputs.n + 1 }}", &scope).unwrap(),
            json!("n=4")
        );
        assert_eq!(templates.render("plain", &scope).unwrap(), json!("plain"));
        assert_eq!(
            templates
                .render("{{ context.missing | default('x') }}", &scope)
                .unwrap(),
            json!("x")
        );
    }

    #[test]
    fn data_that_looks_like_a_template_is_inserted_literally() {
        let templates = Templates::new();
        let payload = "{{ 7 * 7 }}{% for i in range(99999999) %}x{% endfor %}";
        let scope = scope(&json!({"inputs": {"text": payload}}));
        assert_eq!(
            templates.render("{{ inputs.text }}", &scope).unwrap(),
            json!(payload)
        );
        assert_eq!(
            templates.render("got: {{ inputs.text }}", &scope).unwrap(),
            json!(format!("got: {payload}"))
        );
    }

    #[test]
    fn the_sandbox_refuses_undefined_names_endless_loops_and_files() {
        let templates = Templates::new();
        let scope = scope(&json!({"inputs": {}}));
        assert!(templates.render("{{ inputs.nope }}", &scope).is_err());
        assert!(templates.render("{{ nope }}", &scope).is_err());
        let endless =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let error = templates.render(endless, &scope).unwrap_err();
        assert!(error.message.contains("fuel"), "{}", error.message);
        assert!(templates.render("{% include 'x' %}", &scope).is_err());
        assert!(templates.check("{{ unclosed").is_err());
        let error = templates.check("line\n{% if %}").unwrap_err();
        assert_eq!(error.line, Some(2));
    }

    #[test]
    fn conditions_read_bare_or_braced() {
        let templates = Templates::new();
        let scope = scope(&json!({"inputs": {"n": 3}}));
        assert!(templates.truth("inputs.n > 2", &scope).unwrap());
        assert!(!templates.truth("{{ inputs.n > 5 }}", &scope).unwrap());
    }
}
