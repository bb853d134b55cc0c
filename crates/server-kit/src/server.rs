//! A server: compiled caps plus one handler per method.
//!
//! Assembly is checked: a method without a handler, or a handler without a
//! method, is a [`BuildError`] before anything listens.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use jsonschema::ValidationError;
use jsonschema::error::ValidationErrorKind;
use proto::caps::CompiledMethod;
use proto::jsonrpc::kind_of;
use proto::text::{bounded, echo, echo_value};
use proto::{CompiledCaps, ErrorObject, ServiceCodes};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::{BuildError, HandlerError};

type HandlerFn =
    dyn Fn(Context, Value) -> BoxFuture<'static, Result<Value, HandlerError>> + Send + Sync;

/// One routable method: its contract and its handler.
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) compiled: CompiledMethod,
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

/// Collects handlers, then checks them against the caps.
pub struct ServerBuilder {
    caps: CompiledCaps,
    origin: String,
    handlers: HashMap<String, Box<HandlerFn>>,
    duplicate: Option<String>,
}

impl std::fmt::Debug for ServerBuilder {
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
                    // A trailing `null` in the seed's calls means "not given".
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
        if let Some(error) = route.compiled.params.iter_errors(&object).next() {
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
        Ok(object)
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

impl ServerBuilder {
    /// Registers the handler of `method`. Params are validated against the
    /// method's schema, then deserialized into `P`; the result is serialized
    /// from `R`.
    pub fn method<P, R, F, Fut>(mut self, method: &str, handler: F) -> ServerBuilder
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(Context, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let name: Arc<str> = Arc::from(method);
        let handler = Arc::new(handler);
        let boxed: Box<HandlerFn> = Box::new(move |context: Context, params: Value| {
            let params: Result<P, _> = serde_path_to_error::deserialize(params);
            match params {
                Ok(params) => {
                    let future = handler(context, params);
                    async move {
                        let result = future.await?;
                        serde_json::to_value(result).map_err(HandlerError::internal)
                    }
                    .boxed()
                }
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
