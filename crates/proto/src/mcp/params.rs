//! Reading a request's params into the method's typed params, once, at the
//! edge: a malformed value is invalid params (`-32602`) with a message that
//! names the method and the param, and quotes the client's text bounded.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ErrorObject;
use crate::text::echo;

/// Why a request's params do not fit its method.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {method} params{}: {reason}; see the method's params in the MCP specification", at(.param))]
pub struct ParamsError {
    pub method: String,
    /// The param at fault (`arguments`, `ref.type`), when it is not the
    /// params as a whole (a missing field is named in `reason`).
    pub param: Option<String>,
    /// What is wrong, bounded: serde's own words may quote the value.
    pub reason: String,
}

fn at(param: &Option<String>) -> String {
    param
        .as_ref()
        .map(|param| format!(" at {param}"))
        .unwrap_or_default()
}

impl From<ParamsError> for ErrorObject {
    fn from(error: ParamsError) -> ErrorObject {
        ErrorObject::invalid_params(error.to_string())
    }
}

/// `params` (its `_meta` already taken out, see
/// [`super::RequestMeta::take`]) as the params of `method`; absent params
/// read as `{}`.
pub fn parse_params<T: DeserializeOwned>(
    method: &str,
    params: Option<Value>,
) -> Result<T, ParamsError> {
    let params = params.unwrap_or_else(|| Value::Object(super::JsonObject::new()));
    serde_path_to_error::deserialize(params).map_err(|error| {
        let path = error.path().to_string();
        ParamsError {
            method: method.to_owned(),
            param: (path != ".").then(|| echo(&path).into_owned()),
            reason: echo(&error.into_inner().to_string()).into_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mcp::{CallToolParams, CompleteParams, SetLevelParams};

    /// Each malformed params names its method and param, and is -32602.
    #[test]
    fn malformed_params_name_the_method_and_the_param() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "tools/call",
                json!({}),
                "invalid tools/call params: missing field `name`",
            ),
            (
                "tools/call",
                json!({ "name": 5 }),
                "invalid tools/call params at name: invalid type: integer `5`, expected a string",
            ),
            (
                "tools/call",
                json!({ "name": "fs_read", "arguments": [1] }),
                "invalid tools/call params at arguments: invalid type: sequence, expected a map",
            ),
        ];
        for (method, params, expected) in cases {
            let error = parse_params::<CallToolParams>(method, Some(params.clone()))
                .expect_err("malformed");
            assert!(
                error.to_string().starts_with(expected),
                "{error} does not start with {expected}"
            );
            assert_eq!(
                ErrorObject::from(error).code,
                crate::error::code::INVALID_PARAMS
            );
        }
        let level =
            parse_params::<SetLevelParams>("logging/setLevel", Some(json!({ "level": "loud" })))
                .expect_err("unknown level");
        assert_eq!(level.param.as_deref(), Some("level"));
        let complete = parse_params::<CompleteParams>(
            "completion/complete",
            Some(json!({ "ref": { "type": "ref/nothing" }, "argument": { "name": "a", "value": "" } })),
        )
        .expect_err("unknown reference");
        assert!(complete.to_string().contains("ref"), "{complete}");
    }

    /// A client's long value is quoted bounded, never whole.
    #[test]
    fn a_long_value_is_quoted_bounded() {
        let long = "x".repeat(100_000);
        let error =
            parse_params::<SetLevelParams>("logging/setLevel", Some(json!({ "level": long })))
                .expect_err("unknown level");
        assert!(
            error.to_string().len() < 1_000,
            "{} bytes",
            error.to_string().len()
        );
    }

    /// Absent params read as `{}`; unknown fields are ignored.
    #[test]
    fn absent_params_are_empty_and_unknown_fields_ignored() {
        let list: crate::mcp::ListToolsParams = parse_params("tools/list", None).expect("empty");
        assert_eq!(list.cursor, None);
        let call: CallToolParams =
            parse_params("tools/call", Some(json!({ "name": "t", "future": true })))
                .expect("tolerant");
        assert_eq!(call.name, "t");
    }
}
