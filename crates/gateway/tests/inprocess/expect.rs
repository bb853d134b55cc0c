//! What a case expects of an answer, and the one matcher that checks it.
//!
//! A pattern is JSON that the answer must contain: an object matches when
//! each of its keys is present with a matching value (other keys may be
//! there too), an array when it has as many elements and each matches, a
//! scalar when it is equal. So a case names the values that matter and
//! nothing else, and a failure says where the answer differs.

use serde_json::Value;

/// One request and what its answer must be.
#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) era: super::support::Era,
    pub(crate) method: &'static str,
    pub(crate) params: Option<Value>,
    pub(crate) expect: Expect,
    /// JSON pointers (into the result, or into the error) that must be absent.
    pub(crate) absent: Vec<&'static str>,
    /// Text the whole answer must not contain (an internal detail).
    pub(crate) never: Option<&'static str>,
}

#[derive(Debug)]
pub(crate) enum Expect {
    /// The result contains this pattern.
    Result(Value),
    /// The result is exactly this.
    Exactly(Value),
    /// A tool result with `isError: true` whose text says this.
    ToolError(&'static str),
    /// A JSON-RPC error with this code, whose message says this, and
    /// whose data contains this pattern, if given.
    Error {
        code: i32,
        says: &'static str,
        data: Option<Value>,
    },
}

impl Case {
    pub(crate) fn new(
        name: &'static str,
        era: super::support::Era,
        method: &'static str,
        params: Option<Value>,
        expect: Expect,
    ) -> Case {
        Case {
            name,
            era,
            method,
            params,
            expect,
            absent: Vec::new(),
            never: None,
        }
    }

    /// These pointers must not be in the result (or error).
    pub(crate) fn without(mut self, pointers: &[&'static str]) -> Case {
        self.absent.extend_from_slice(pointers);
        self
    }

    /// The answer must not contain `text` anywhere.
    pub(crate) fn never(mut self, text: &'static str) -> Case {
        self.never = Some(text);
        self
    }

    /// Checks a JSON-RPC response (as it goes on the wire).
    pub(crate) fn check(&self, response: &Value) -> Result<(), String> {
        if response["jsonrpc"] != "2.0" {
            return Err("not a JSON-RPC 2.0 response".to_owned());
        }
        let (part, found) = match &self.expect {
            Expect::Error { .. } => ("error", response.get("error")),
            _ => ("result", response.get("result")),
        };
        let Some(found) = found else {
            return Err(format!("expected a {part}"));
        };
        match &self.expect {
            Expect::Result(pattern) => contains(found, pattern, "")?,
            Expect::Exactly(expected) => {
                if found != expected {
                    return Err(format!("expected exactly {expected}"));
                }
            }
            Expect::ToolError(says) => {
                if found["isError"] != true {
                    return Err("expected isError: true".to_owned());
                }
                let text = found["content"][0]["text"].as_str().unwrap_or("");
                if !text.contains(says) {
                    return Err(format!("the tool error does not say {says:?}"));
                }
            }
            Expect::Error { code, says, data } => {
                if found["code"] != *code {
                    return Err(format!("expected error code {code}"));
                }
                let message = found["message"].as_str().unwrap_or("");
                if !message.contains(says) {
                    return Err(format!("the error message does not say {says:?}"));
                }
                if let Some(data) = data {
                    contains(&found["data"], data, "/data")?;
                }
            }
        }
        for pointer in &self.absent {
            if found.pointer(pointer).is_some() {
                return Err(format!("{part}{pointer} should be absent"));
            }
        }
        if let Some(text) = self.never
            && response.to_string().contains(text)
        {
            return Err(format!("the answer gives away {text:?}"));
        }
        Ok(())
    }
}

/// Whether `actual` contains `pattern` (see the module's docs); the error
/// names the JSON pointer where they differ.
pub(crate) fn contains(actual: &Value, pattern: &Value, at: &str) -> Result<(), String> {
    match (actual, pattern) {
        (Value::Object(actual), Value::Object(pattern)) => {
            for (key, expected) in pattern {
                let here = format!("{at}/{key}");
                match actual.get(key) {
                    Some(found) => contains(found, expected, &here)?,
                    None => return Err(format!("{here} is missing (expected {expected})")),
                }
            }
            Ok(())
        }
        (Value::Array(actual), Value::Array(pattern)) => {
            if actual.len() != pattern.len() {
                return Err(format!(
                    "{at} has {} elements, expected {}",
                    actual.len(),
                    pattern.len()
                ));
            }
            for (index, (found, expected)) in actual.iter().zip(pattern).enumerate() {
                contains(found, expected, &format!("{at}/{index}"))?;
            }
            Ok(())
        }
        (found, expected) if found == expected => Ok(()),
        (found, expected) => Err(format!("{at} is {found}, expected {expected}")),
    }
}

#[test]
fn the_matcher_says_where_an_answer_differs() {
    use serde_json::json;
    let answer = json!({ "a": [1, { "b": "x", "c": 2 }], "d": true });
    assert_eq!(
        contains(&answer, &json!({ "a": [1, { "b": "x" }] }), ""),
        Ok(())
    );
    assert_eq!(
        contains(&answer, &json!({ "a": [1, { "b": "y" }] }), ""),
        Err("/a/1/b is \"x\", expected \"y\"".to_owned())
    );
    assert_eq!(
        contains(&answer, &json!({ "a": [1] }), ""),
        Err("/a has 2 elements, expected 1".to_owned())
    );
    assert_eq!(
        contains(&answer, &json!({ "e": null }), ""),
        Err("/e is missing (expected null)".to_owned())
    );
}
