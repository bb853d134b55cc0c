"""The web console's security (issue 18, Deliver 3), over plain HTTP: the
one-time sign-in link, the session cookie, CSRF, Origin and Host checks,
the security headers, bounded bodies, and that the token never reaches a
log. In-browser checks (no script runs) are in test_web_browser.py."""

from __future__ import annotations

import hashlib
import time

import pytest

from web.console import start

CSP = "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@pytest.fixture
def console(tmp_path):
    stack, console = start(tmp_path)
    yield console
    console.stop()
    stack.stop()
    # Whatever the test did, no token ever reaches a log.
    logs = console.log() + (tmp_path / "gateway.log").read_text(errors="replace")
    for token in console.minted:
        assert token not in logs
        assert hashlib.sha256(token.encode()).hexdigest() not in logs


def assert_secure_headers(response):
    assert response.headers["content-security-policy"].startswith(CSP)
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_every_response_carries_the_security_headers(console):
    client, _ = console.signed_in()
    for path in ["/", "/tools", "/logs", "/licence", "/assets/app.js", "/assets/app.css", "/no-such-page"]:
        assert_secure_headers(client.get(path))
    assert_secure_headers(console.client().get("/api/calls/x/events"))
    assert_secure_headers(console.client().post("/session", json={}, headers={"Origin": "http://evil.example"}))


def test_without_a_cookie_nothing_is_shown_or_done(console):
    client = console.client()
    page = client.get("/tools")
    assert page.status_code == 200
    assert "llmbasedos web" in page.text and "fs_read" not in page.text and "csrf-token" not in page.text
    assert client.get("/api/logs/stream").status_code == 401
    call = client.post(
        "/api/tools/call", json={"name": "fs_read", "arguments": {"path": "/hello.txt"}}, headers={"Origin": console.base}
    )
    assert call.status_code == 401
    # A made-up cookie is no better.
    client.cookies["llmbasedos_session"] = "0" * 64
    assert client.get("/api/logs/stream").status_code == 401


def test_the_session_cookie_is_httponly_strict_and_not_secure_on_plain_http(console):
    client = console.client()
    response = client.post("/session", json={"token": console.token()}, headers={"Origin": console.base})
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0].startswith("llmbasedos_session=") and len(parts[0].split("=", 1)[1]) == 64
    assert "HttpOnly" in parts and "SameSite=Strict" in parts and "Path=/" in parts
    assert "Secure" not in parts


def test_a_bootstrap_token_works_once(console):
    token = console.token()
    first = console.client().post("/session", json={"token": token}, headers={"Origin": console.base})
    assert first.status_code == 204
    stolen = console.client().post("/session", json={"token": token}, headers={"Origin": console.base})
    assert stolen.status_code == 403
    assert "set-cookie" not in stolen.headers
    assert "used already" in stolen.text


def test_an_expired_or_made_up_token_is_refused(console):
    # A token minted 301 s ago, written as `llmbasedos web` writes it.
    token = "ab" * 32
    console.bootstrap_dir.mkdir(exist_ok=True)
    (console.bootstrap_dir / f"{hashlib.sha256(token.encode()).hexdigest()}.token").write_text(
        f"{int(time.time()) - 1}\n"
    )
    console.minted.append(token)
    expired = console.client().post("/session", json={"token": token}, headers={"Origin": console.base})
    assert expired.status_code == 403 and "expired" in expired.text
    for made_up in ["cd" * 32, "../../etc/passwd", "", "x" * 100000]:
        response = console.client().post("/session", json={"token": made_up}, headers={"Origin": console.base})
        assert response.status_code in (403, 413), response.text
        assert len(response.text) < 2100


def test_sign_in_needs_the_exact_origin(console):
    token = console.token()
    for origin in [None, "http://evil.example", f"http://127.0.0.1:{console.port}.evil.example", "null"]:
        headers = {} if origin is None else {"Origin": origin}
        response = console.client().post("/session", json={"token": token}, headers=headers)
        assert response.status_code == 403, origin
    # Refusals did not spend the token.
    assert console.client().post("/session", json={"token": token}, headers={"Origin": console.base}).status_code == 204


def test_state_changes_need_the_csrf_header_and_the_exact_origin(console):
    client, csrf = console.signed_in()
    body = {"name": "fs_read", "arguments": {"path": "/hello.txt"}}
    # A cross-site form post: the cookie (were it sent) but no CSRF header.
    no_header = client.post("/api/tools/call", json=body, headers={"Origin": console.base})
    assert no_header.status_code == 403 and "CSRF" in no_header.text
    wrong = client.post("/api/tools/call", json=body, headers={"Origin": console.base, "X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    foreign = client.post("/api/tools/call", json=body, headers={"Origin": "http://evil.example", "X-CSRF-Token": csrf})
    assert foreign.status_code == 403 and "Origin" in foreign.text
    missing = client.post("/api/tools/call", json=body, headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 403
    control = client.post(
        "/api/services/fs/stop", headers={"Origin": "http://evil.example", "X-CSRF-Token": csrf}
    )
    assert control.status_code == 403
    accepted = client.post("/api/tools/call", json=body, headers={"Origin": console.base, "X-CSRF-Token": csrf})
    assert accepted.status_code == 200 and len(accepted.json()["id"]) == 32


def test_a_rebinding_host_is_refused_even_with_a_session(console):
    client, csrf = console.signed_in()
    for host in ["evil.example", f"evil.example:{console.port}", f"127.0.0.1.nip.io:{console.port}", "127.0.0.1"]:
        response = client.get("/tools", headers={"Host": host})
        assert response.status_code == 421, host
        assert "fs_read" not in response.text
        posted = client.post(
            "/api/tools/call",
            json={"name": "fs_read", "arguments": {"path": "/hello.txt"}},
            headers={"Host": host, "Origin": f"http://{host}", "X-CSRF-Token": csrf},
        )
        assert posted.status_code == 421
    assert client.get("/tools", headers={"Host": f"localhost:{console.port}"}).status_code == 200


def test_bodies_and_error_texts_are_bounded(console):
    client, csrf = console.signed_in()
    big = client.post(
        "/api/tools/call",
        content=b'{"name": "fs_read", "arguments": {"path": "' + b"a" * (1024 * 1024) + b'"}}',
        headers={"Origin": console.base, "X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    page = client.get("/tools/" + "x" * 5000)
    assert page.status_code == 200 and len(page.text) < 20000


def test_the_token_is_not_logged_even_at_trace_level(console):
    client, _ = console.signed_in()
    client.get("/")
    assert "session opened" in console.log()
