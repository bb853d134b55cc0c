//! llmbasedos-mail: IMAP, SMTP and calendars, safe to hand to a language model.
pub mod calendar;
pub mod mime;
pub mod oauth;
