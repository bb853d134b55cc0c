//! What a handler is: an async function of the request's [`Context`], its
//! typed params and, when the server has state, a [`State`] handle to it.
//!
//! Axum's pattern: the builder is given the state once
//! ([`crate::ServerBuilder::with_state`]) and every handler that asks for
//! it gets a handle, so a server does not clone its resources into one
//! closure per method. The two forms are told apart by their arity
//! (the [`Handler`] impls below), so a handler is a plain `async fn`:
//!
//! ```ignore
//! async fn read(context: Context, fs: State<Fs>, params: ReadParams) -> Result<ReadResult, HandlerError>
//! ```

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::context::Context;
use crate::error::HandlerError;

/// The server's state as a handler receives it. Cloning it clones an
/// [`Arc`], so a handler can move it into blocking work.
#[derive(Debug)]
pub struct State<S>(pub Arc<S>);

impl<S> Clone for State<S> {
    fn clone(&self) -> State<S> {
        State(self.0.clone())
    }
}

impl<S> Deref for State<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

/// A handler of one method on a server with state `S`, taking params `P`.
/// `M` only tells the two impls apart: `Fn(Context, P)` and
/// `Fn(Context, State<S>, P)`, each returning a future of
/// `Result<R, HandlerError>` with `R: Serialize`.
pub trait Handler<S, P, M>: Send + Sync + 'static {
    /// Runs the handler; its result serialized (JSON text: it is written
    /// into the answer as it is, never built into a `Value` first).
    fn call(
        &self,
        context: Context,
        state: &Arc<S>,
        params: P,
    ) -> BoxFuture<'static, Result<Box<RawValue>, HandlerError>>;
}

/// Marks a handler that takes no state.
#[derive(Debug)]
pub struct Stateless;

/// Marks a handler that takes the server's [`State`].
#[derive(Debug)]
pub struct Stateful;

fn serialized<R: Serialize>(
    future: impl Future<Output = Result<R, HandlerError>> + Send + 'static,
) -> BoxFuture<'static, Result<Box<RawValue>, HandlerError>> {
    async move { serde_json::value::to_raw_value(&future.await?).map_err(HandlerError::internal) }
        .boxed()
}

impl<S, P, R, F, Fut> Handler<S, P, Stateless> for F
where
    F: Fn(Context, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    R: Serialize + 'static,
{
    fn call(
        &self,
        context: Context,
        _state: &Arc<S>,
        params: P,
    ) -> BoxFuture<'static, Result<Box<RawValue>, HandlerError>> {
        serialized(self(context, params))
    }
}

impl<S, P, R, F, Fut> Handler<S, P, Stateful> for F
where
    F: Fn(Context, State<S>, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    R: Serialize + 'static,
{
    fn call(
        &self,
        context: Context,
        state: &Arc<S>,
        params: P,
    ) -> BoxFuture<'static, Result<Box<RawValue>, HandlerError>> {
        serialized(self(context, State(state.clone()), params))
    }
}
