//! What the command-line clients (`llmbasedos call`, luca-shell) share: where
//! a stack started by `llmbasedos up` lives, and how params typed as words
//! become JSON.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The runtime directory of `llmbasedos up`: `$XDG_RUNTIME_DIR/llmbasedos`,
/// or `/tmp/llmbasedos-<uid>` without one.
pub fn default_runtime_dir() -> PathBuf {
    // SAFETY: getuid cannot fail.
    runtime_dir_from(std::env::var_os("XDG_RUNTIME_DIR"), unsafe {
        libc::getuid()
    })
}

/// [`default_runtime_dir`] from its inputs, for tests.
pub fn runtime_dir_from(xdg_runtime_dir: Option<OsString>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("llmbasedos"),
        _ => PathBuf::from(format!("/tmp/llmbasedos-{uid}")),
    }
}

/// The gateway's UNIX socket in a runtime directory.
pub fn gateway_socket(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("gateway.sock")
}

/// Params as typed: words (plain values first, then `key=value`), or one
/// JSON object or array.
#[derive(Clone, Debug, PartialEq)]
pub enum Params {
    Words {
        positional: Vec<Value>,
        named: Map<String, Value>,
    },
    Json(Value),
}

/// Reads params from words: a value that reads as JSON is JSON, anything
/// else a string; plain values come before `key=value` ones.
pub fn parse_params(words: &[String]) -> Result<Params, String> {
    if let [single] = words
        && (single.starts_with('{') || single.starts_with('['))
    {
        return serde_json::from_str(single)
            .map(Params::Json)
            .map_err(|error| format!("the params are not valid JSON: {error}"));
    }
    let mut positional = Vec::new();
    let mut named = Map::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if is_param_name(key) => {
                named.insert(key.to_owned(), json_or_string(value));
            }
            _ if named.is_empty() => positional.push(json_or_string(word)),
            _ => {
                return Err(format!(
                    "{word:?} comes after key=value params; give it as key=value too"
                ));
            }
        }
    }
    Ok(Params::Words { positional, named })
}

fn is_param_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|character| character.is_alphanumeric() || character == '_' || character == '-')
}

fn json_or_string(value: &str) -> Value {
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
}

impl Params {
    /// The JSON-RPC params: an object for named ones, an array for plain
    /// values only (the seed's positional form), nothing when empty.
    pub fn into_value(self) -> Result<Option<Value>, String> {
        match self {
            Params::Json(value) => Ok(Some(value)),
            Params::Words { positional, named } if positional.is_empty() && named.is_empty() => {
                Ok(None)
            }
            Params::Words { positional, named } if named.is_empty() => {
                Ok(Some(Value::Array(positional)))
            }
            Params::Words { positional, named } if positional.is_empty() => {
                Ok(Some(Value::Object(named)))
            }
            Params::Words { .. } => {
                Err("give either plain values or key=value params, not both".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn params_from_words() {
        let cases = [
            (words(&[]), Ok(None)),
            (
                words(&["text=hi", "repeat=2"]),
                Ok(Some(json!({"text": "hi", "repeat": 2}))),
            ),
            (words(&["text=a=b"]), Ok(Some(json!({"text": "a=b"})))),
            (
                words(&["flag=true", "list=[1,2]"]),
                Ok(Some(json!({"flag": true, "list": [1, 2]}))),
            ),
            (words(&["hi", "2"]), Ok(Some(json!(["hi", 2])))),
            (words(&[r#"{"text":"x"}"#]), Ok(Some(json!({"text": "x"})))),
            (words(&[r#"["x",3]"#]), Ok(Some(json!(["x", 3])))),
        ];
        for (input, expected) in cases {
            let got = parse_params(&input).and_then(Params::into_value);
            assert_eq!(got, expected, "{input:?}");
        }
        assert!(parse_params(&words(&["{broken"])).is_err());
        assert!(parse_params(&words(&["a=1", "loose"])).is_err());
        assert!(
            parse_params(&words(&["loose", "a=1"]))
                .and_then(Params::into_value)
                .is_err()
        );
    }

    #[test]
    fn runtime_dirs() {
        assert_eq!(
            runtime_dir_from(Some("/run/user/7".into()), 7),
            PathBuf::from("/run/user/7/llmbasedos")
        );
        assert_eq!(
            runtime_dir_from(Some("".into()), 7),
            PathBuf::from("/tmp/llmbasedos-7")
        );
        assert_eq!(
            runtime_dir_from(None, 7),
            PathBuf::from("/tmp/llmbasedos-7")
        );
    }
}
