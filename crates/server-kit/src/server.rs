//! A server: compiled caps plus one handler per method.
//!
//! Assembly is checked: a method without a handler, or a handler without a
//! method, is a [`BuildError`] before anything listens. A server may carry
//! state ([`ServerBuilder::with_state`]) that its handlers receive as
//! [`State`](crate::handler::State). Params are validated against the
//! method's schema, then the schema's `default`s fill in what the caller
//! left out ([`Defaults`]), so a default lives in the caps file alone and a
//! handler's params type has plain fields for defaulted params.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use jsonschema::ValidationError;
use jsonschema::error::ValidationErrorKind;
use proto::caps::CompiledMethod;
use proto::jsonrpc::kind_of;
use proto::text::{bounded, echo, echo_value};
use proto::{CompiledCaps, ErrorObject, ServiceCodes};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::{BuildError, HandlerError};
use crate::handler::Handler;

type HandlerFn =
    dyn Fn(Context, Value) -> BoxFuture<'static, Result<Box<RawValue>, HandlerError>> + Send + Sync;

/// One routable method: its contract and its handler.
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) compiled: CompiledMethod,
    pub(crate) defaults: Defaults,
    pub(crate) handler: Box<HandlerFn>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A server ready to serve connections. Cheap to share: wrap it in an [`Arc`].
#[derive(Debug)]
pub struct Server {
    service: String,
    origin: String,
    codes: ServiceCodes,
    routes: HashMap<String, Route>,
}

/// Collects handlers, then checks them against the caps. `S` is the state
/// handlers receive ([`ServerBuilder::with_state`]); none by default.
pub struct ServerBuilder<S = ()> {
    caps: CompiledCaps,
    origin: String,
    state: Arc<S>,
    handlers: HashMap<String, Box<HandlerFn>>,
    duplicate: Option<String>,
}

impl<S> std::fmt::Debug for ServerBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("origin", &self.origin)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts a server from compiled caps; `origin` names the caps file in errors.
    pub fn builder(caps: CompiledCaps, origin: impl Into<String>) -> ServerBuilder {
        ServerBuilder {
            caps,
            origin: origin.into(),
            state: Arc::new(()),
            handlers: HashMap::new(),
            duplicate: None,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub(crate) fn codes(&self) -> ServiceCodes {
        self.codes
    }

    pub(crate) fn route(&self, method: &str) -> Option<&Route> {
        self.routes.get(method)
    }

    /// Turns raw params into the object the handler validates against:
    /// named params pass through, positional arrays are mapped through the
    /// method's `positional` order, absent params are an empty object.
    pub(crate) fn prepare_params(
        route: &Route,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let spec = &route.compiled.spec;
        let object = match params {
            None => Value::Object(Map::new()),
            Some(Value::Object(object)) => Value::Object(object),
            Some(Value::Array(items)) => {
                if spec.positional.is_empty() {
                    return Err(ErrorObject::invalid_params(format!(
                        "{} takes named params only: pass an object",
                        spec.name
                    )));
                }
                if items.len() > spec.positional.len() {
                    return Err(ErrorObject::invalid_params(format!(
                        "{} takes at most {} positional params ({}), got {}",
                        spec.name,
                        spec.positional.len(),
                        spec.positional.join(", "),
                        items.len()
                    )));
                }
                let mut object = Map::with_capacity(items.len());
                for (name, item) in spec.positional.iter().zip(items) {
                    // A trailing `null` in the classic vocabulary's calls means "not given".
                    if !item.is_null() {
                        object.insert(name.clone(), item);
                    }
                }
                Value::Object(object)
            }
            // The envelope parser lets only objects and arrays through.
            Some(other) => {
                return Err(ErrorObject::invalid_request(format!(
                    "\"params\" must be an object or an array, not {}",
                    kind_of(&other)
                )));
            }
        };
        let validator = route.compiled.params().map_err(|error| {
            tracing::error!(method = %spec.name, %error, "a params_schema of the server's own caps does not compile");
            ErrorObject::internal(format!(
                "{}: the server cannot check its params (its caps are broken; see its log)",
                spec.name
            ))
        })?;
        if let Some(error) = validator.iter_errors(&object).next() {
            let path = error.instance_path().to_string();
            let location = if path.is_empty() {
                String::new()
            } else {
                format!(" at {}", echo(&path))
            };
            return Err(ErrorObject::invalid_params(format!(
                "invalid params for {}{location}: {}",
                spec.name,
                describe(&error)
            )));
        }
        // After validation, so that an error speaks of what the caller sent.
        let mut object = object;
        route.defaults.apply(&mut object);
        Ok(object)
    }
}

/// The `default`s of a params schema, to fill in what a caller left out:
/// the object's own properties and, beneath them, those of nested objects
/// and of the objects in arrays (an edit's `replace_all`). The caps file is
/// the one place a default is written; code that needs one reads it from
/// the params it is given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Defaults {
    /// Properties with a default, and the value.
    values: Vec<(String, Value)>,
    /// Properties whose (object) value has defaults of its own.
    objects: Vec<(String, Defaults)>,
    /// Properties whose array items are objects with defaults.
    items: Vec<(String, Defaults)>,
}

impl Defaults {
    /// The defaults an object schema declares.
    pub fn of(schema: &Value) -> Defaults {
        let mut defaults = Defaults::default();
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return defaults;
        };
        for (name, property) in properties {
            if let Some(value) = property.get("default") {
                defaults.values.push((name.clone(), value.clone()));
            }
            let nested = Defaults::of(property);
            if !nested.is_empty() {
                defaults.objects.push((name.clone(), nested));
            }
            if let Some(items) = property.get("items") {
                let nested = Defaults::of(items);
                if !nested.is_empty() {
                    defaults.items.push((name.clone(), nested));
                }
            }
        }
        defaults
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.objects.is_empty() && self.items.is_empty()
    }

    /// The names of the properties with a default, at the top level.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(name, _)| name.as_str())
    }

    /// Fills in each absent property that has a default.
    pub fn apply(&self, value: &mut Value) {
        let Value::Object(object) = value else {
            return;
        };
        for (name, default) in &self.values {
            if !object.contains_key(name) {
                object.insert(name.clone(), default.clone());
            }
        }
        for (name, nested) in &self.objects {
            if let Some(inner) = object.get_mut(name) {
                nested.apply(inner);
            }
        }
        for (name, nested) in &self.items {
            if let Some(Value::Array(items)) = object.get_mut(name) {
                for item in items {
                    nested.apply(item);
                }
            }
        }
    }
}

/// What a schema violation says, quoting the client's value only in part.
/// jsonschema's own `Display` quotes the whole instance (a 12 MiB string
/// where a number belongs came back whole); its masked form takes the
/// value's summary from [`echo_value`] instead, and the kinds that list the
/// client's property names are written here with the list bounded.
fn describe(error: &ValidationError<'_>) -> String {
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!(
                "additional properties are not allowed: {}",
                names(unexpected)
            )
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            format!(
                "unevaluated properties are not allowed: {}",
                names(unexpected)
            )
        }
        ValidationErrorKind::PropertyNames { error } => {
            format!("a property name is invalid: {}", describe(error))
        }
        _ => error.masked_with(echo_value(error.instance())).to_string(),
    }
}

/// The first few of a client's property names, each bounded, and how many
/// more there are.
fn names(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|name| format!("\"{}\"", echo(name)))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

impl ServerBuilder<()> {
    /// Gives the server state: every handler registered from here on may
    /// take it as [`State<S>`](crate::handler::State) (one `Arc` clone per
    /// call), instead of each capturing its own copies.
    pub fn with_state<S: Send + Sync + 'static>(self, state: S) -> ServerBuilder<S> {
        ServerBuilder {
            caps: self.caps,
            origin: self.origin,
            state: Arc::new(state),
            handlers: self.handlers,
            duplicate: self.duplicate,
        }
    }
}

impl<S: Send + Sync + 'static> ServerBuilder<S> {
    /// Registers the handler of `method`: an async function of
    /// `(Context, P)`, or of `(Context, State<S>, P)` for one that uses the
    /// server's state (see [`crate::handler`]). Params are validated
    /// against the method's schema, the schema's defaults filled in, then
    /// deserialized into `P`; the result is serialized.
    pub fn method<P, M>(mut self, method: &str, handler: impl Handler<S, P, M>) -> ServerBuilder<S>
    where
        P: DeserializeOwned + Send + 'static,
    {
        let name: Arc<str> = Arc::from(method);
        let state = self.state.clone();
        let boxed: Box<HandlerFn> = Box::new(move |context: Context, params: Value| {
            let params: Result<P, _> = serde_path_to_error::deserialize(params);
            match params {
                Ok(params) => handler.call(context, &state, params),
                Err(error) => {
                    // serde quotes the value it refused (a string, an
                    // unknown variant) whole: bounded like any echo.
                    let message = format!(
                        "invalid params for {name}: at {}: {}",
                        echo(&error.path().to_string()),
                        bounded(&error.inner().to_string(), 2 * proto::text::ECHO_LIMIT)
                    );
                    futures::future::ready(Err(HandlerError::InvalidParams(message))).boxed()
                }
            }
        });
        if self.handlers.insert(method.to_owned(), boxed).is_some() {
            self.duplicate.get_or_insert_with(|| method.to_owned());
        }
        self
    }

    /// Checks that caps and handlers match one to one.
    pub fn build(self) -> Result<Server, BuildError> {
        let ServerBuilder {
            caps,
            origin,
            mut handlers,
            duplicate,
            ..
        } = self;
        if let Some(method) = duplicate {
            return Err(BuildError::DuplicateHandler { method });
        }
        let (caps, mut compiled) = caps.into_parts();
        let Some(base) = caps.error_base else {
            return Err(BuildError::MissingErrorBase { origin });
        };
        let mut routes = HashMap::with_capacity(handlers.len());
        for spec in &caps.methods {
            let method = spec.name.as_str();
            let Some(handler) = handlers.remove(method) else {
                return Err(BuildError::MissingHandler {
                    origin,
                    method: method.to_owned(),
                });
            };
            let compiled = compiled
                .remove(method)
                .expect("every declared method is compiled");
            routes.insert(
                method.to_owned(),
                Route {
                    name: Arc::from(method),
                    defaults: Defaults::of(&compiled.spec.params_schema),
                    compiled,
                    handler,
                },
            );
        }
        if let Some(method) = handlers.into_keys().min() {
            return Err(BuildError::UnknownMethod { origin, method });
        }
        Ok(Server {
            service: caps.service,
            origin,
            codes: ServiceCodes::new(base),
            routes,
        })
    }
}

impl Server {
    /// Where the caps came from, for log lines.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Defaults;

    #[test]
    fn defaults_fill_in_what_the_caller_left_out_and_nothing_else() {
        let schema = json!({
            "type": "object",
            "properties": {
                "limit": { "type": "integer", "default": 1000 },
                "sort": { "enum": ["name", "size"], "default": "name" },
                "path": { "type": "string" },
                "edits": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": { "replace_all": { "type": "boolean", "default": false } }
                    }
                },
                "options": {
                    "type": "object",
                    "properties": { "depth": { "type": "integer", "default": 3 } }
                }
            }
        });
        let defaults = Defaults::of(&schema);
        let mut names: Vec<&str> = defaults.names().collect();
        names.sort_unstable();
        assert_eq!(names, ["limit", "sort"]);
        let mut params = json!({
            "sort": "size",
            "edits": [{ "replace_all": true }, {}],
            "options": {}
        });
        defaults.apply(&mut params);
        assert_eq!(
            params,
            json!({
                "limit": 1000,
                "sort": "size",
                "edits": [{ "replace_all": true }, { "replace_all": false }],
                "options": { "depth": 3 }
            })
        );
        assert!(Defaults::of(&json!({ "type": "object" })).is_empty());
    }
}
