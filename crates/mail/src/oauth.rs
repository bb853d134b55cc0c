//! OAuth2 for IMAP/SMTP (RFC 6749, RFC 8628, XOAUTH2, OAUTHBEARER): not written yet.
