//! The console's one script and one style sheet, compiled into the binary
//! and served from its own origin.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page script.
pub const SCRIPT: &str = include_str!("../assets/app.js");
/// The style sheet.
pub const STYLE: &str = include_str!("../assets/app.css");

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}
