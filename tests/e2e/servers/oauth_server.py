"""A local OAuth2 provider for the mail server's end-to-end tests (stdlib only).

It speaks the wire formats exactly: the refresh-token grant of RFC 6749 §6
(form-encoded POST, JSON answer, §5.2 JSON errors such as `invalid_grant`)
and the device authorization grant of RFC 8628 (§3.1 device endpoint, §3.4
polling with `authorization_pending`, `slow_down` when polled faster than
the interval, `access_denied`, `expired_token`). Client authentication is
the form's client_id/client_secret or HTTP Basic (RFC 6749 §2.3.1).

For dovecot's XOAUTH2/OAUTHBEARER with the token as the passdb password,
`--passwd-file` is rewritten (atomically) with the access token that is
currently valid each time one is issued or expired; `@TOKEN@` in
`--passwd-template` is replaced by it.

Usage:
  oauth_server.py --client-id ID [--client-secret S] [--refresh-token R]
                  [--expires-in SECONDS] [--device-interval SECONDS]
                  [--passwd-file PATH --passwd-template 'alice:{PLAIN}@TOKEN@::::::']

It listens on 127.0.0.1 on a free port and prints one JSON line on stdout,
{"port": N}, when ready. Endpoints:
  POST /token                     RFC 6749 §6 and RFC 8628 §3.4
  POST /device                    RFC 8628 §3.1 (verification_uri is /activate)
  POST /admin/expire              the current access token stops being valid
  POST /admin/revoke              every refresh token is refused (invalid_grant)
  POST /admin/rotate  {"enabled": bool}   issue a new refresh token on each refresh
  POST /admin/config  {"expires_in": N, "device_interval": N}
  POST /admin/approve | /admin/deny | /admin/expire-device   the pending device codes
  GET  /admin/state               JSON: valid refresh tokens, current access
                                  token, counts, device codes' states and user
                                  codes, every request's form fields
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Provider:
    def __init__(self, args: argparse.Namespace) -> None:
        self.lock = threading.Lock()
        self.client_id = args.client_id
        self.client_secret = args.client_secret
        self.expires_in = args.expires_in
        self.device_interval = args.device_interval
        self.passwd_file = args.passwd_file
        self.passwd_template = args.passwd_template
        self.refresh_tokens: set[str] = set(args.refresh_token or [])
        self.rotate = False
        self.access_token: str | None = None
        self.issued = 0
        self.refreshes = 0
        self.requests: list[dict] = []
        # device_code -> {"state": pending|approved|denied|expired, "last_poll": t, "user_code": ...}
        self.devices: dict[str, dict] = {}
        self.write_passwd()

    def write_passwd(self) -> None:
        if not self.passwd_file:
            return
        # With no valid token, a random value nobody holds.
        token = self.access_token or "expired-" + secrets.token_hex(16)
        line = self.passwd_template.replace("@TOKEN@", token)
        directory = os.path.dirname(os.path.abspath(self.passwd_file))
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".passwd-")
        with os.fdopen(fd, "w") as out:
            out.write(line + "\n")
        os.chmod(temp, 0o600)
        written = int(time.time())
        os.replace(temp, self.passwd_file)
        # dovecot looks at a passwd-file at most once a wall-clock second
        # (db-passwd-file.c: passwd_file_sync returns the cached users when
        # last_sync_time == ioloop_time), and re-reads it when its mtime or
        # size changed. A login refused in the second this file is written
        # (the old token) would leave the new token unseen until the next
        # second, which a real provider's fresh token never is: so nothing
        # is answered (the callers hold the lock) before that second has
        # passed. That also gives every version its own mtime.
        time.sleep(max(0.0, written + 1 - time.time()) + 0.01)

    def issue(self, with_refresh: str | None) -> dict:
        self.issued += 1
        self.access_token = f"access-{self.issued}-{secrets.token_hex(4)}"
        self.write_passwd()
        answer = {"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in}
        if with_refresh:
            answer["refresh_token"] = with_refresh
        return answer


def error(code: str, description: str) -> tuple[int, dict]:
    status = 401 if code == "invalid_client" else 400
    return status, {"error": code, "error_description": description}


class Handler(BaseHTTPRequestHandler):
    server_version = "test-oauth/1"
    provider: Provider

    def log_message(self, format: str, *args) -> None:  # quiet: tests read stdout
        pass

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        p = self.provider
        if self.path == "/admin/state":
            with p.lock:
                self.answer(200, {
                    "refresh_tokens": sorted(p.refresh_tokens),
                    "access_token": p.access_token,
                    "issued": p.issued,
                    "refreshes": p.refreshes,
                    "rotate": p.rotate,
                    "devices": {code: d["state"] for code, d in p.devices.items()},
                    "user_codes": [d["user_code"] for d in p.devices.values()],
                    "requests": p.requests,
                })
            return
        if self.path.startswith("/activate"):
            self.answer(200, {"message": "approve with POST /admin/approve"})
            return
        self.answer(404, {"error": "not_found"})

    def do_POST(self) -> None:
        raw = self.body()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/admin/"):
            self.admin(path, raw)
            return
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            self.answer(*error("invalid_request", "the body must be application/x-www-form-urlencoded"))
            return
        form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        with self.provider.lock:
            self.provider.requests.append({"path": path, "form": form})
            status, body = self.grant(path, form)
        self.answer(status, body)

    def client_ok(self, form: dict) -> bool:
        p = self.provider
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            client_id, client_secret = urllib.parse.unquote(user), urllib.parse.unquote(password)
        if client_id != p.client_id:
            return False
        return p.client_secret is None or client_secret == p.client_secret

    def grant(self, path: str, form: dict) -> tuple[int, dict]:
        p = self.provider
        if path == "/device":
            if form.get("client_id") != p.client_id:
                return error("invalid_client", "unknown client")
            code = "device-" + secrets.token_hex(8)
            user_code = secrets.token_hex(2).upper() + "-" + secrets.token_hex(2).upper()
            p.devices[code] = {"state": "pending", "last_poll": 0.0, "user_code": user_code}
            port = self.server.server_address[1]
            return 200, {
                "device_code": code,
                "user_code": user_code,
                "verification_uri": f"http://127.0.0.1:{port}/activate",
                "verification_uri_complete": f"http://127.0.0.1:{port}/activate?user_code={user_code}",
                "expires_in": 600,
                "interval": p.device_interval,
            }
        if path != "/token":
            return 404, {"error": "not_found"}
        if not self.client_ok(form):
            return error("invalid_client", "client authentication failed")
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in p.refresh_tokens:
                return error("invalid_grant", "Token has been expired or revoked.")
            p.refreshes += 1
            rotated = None
            if p.rotate:
                rotated = "refresh-" + secrets.token_hex(8)
                p.refresh_tokens.discard(token)
                p.refresh_tokens.add(rotated)
            return 200, p.issue(rotated)
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            device = p.devices.get(form.get("device_code", ""))
            if device is None:
                return error("invalid_grant", "unknown device code")
            now = time.monotonic()
            too_soon = now - device["last_poll"] < p.device_interval
            device["last_poll"] = now
            state = device["state"]
            if state == "denied":
                return error("access_denied", "the user declined")
            if state == "expired":
                return error("expired_token", "the device code expired")
            if state == "used":
                return error("invalid_grant", "the device code was already used")
            if too_soon:
                return error("slow_down", "polling faster than the interval")
            if state == "pending":
                return error("authorization_pending", "waiting for the user")
            device["state"] = "used"
            refresh = "refresh-" + secrets.token_hex(8)
            p.refresh_tokens.add(refresh)
            return 200, p.issue(refresh)
        return error("unsupported_grant_type", "only refresh_token and device_code")

    def admin(self, path: str, raw: bytes) -> None:
        p = self.provider
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self.answer(400, {"error": "admin bodies are JSON"})
            return
        with p.lock:
            if path == "/admin/expire":
                p.access_token = None
                p.write_passwd()
            elif path == "/admin/revoke":
                p.refresh_tokens.clear()
            elif path == "/admin/rotate":
                p.rotate = bool(body.get("enabled", True))
            elif path == "/admin/config":
                p.expires_in = int(body.get("expires_in", p.expires_in))
                p.device_interval = int(body.get("device_interval", p.device_interval))
            elif path in ("/admin/approve", "/admin/deny", "/admin/expire-device"):
                new_state = {"/admin/approve": "approved", "/admin/deny": "denied"}.get(path, "expired")
                for device in p.devices.values():
                    if device["state"] == "pending":
                        device["state"] = new_state
            else:
                self.answer(404, {"error": "not_found"})
                return
        self.answer(200, {"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret")
    parser.add_argument("--refresh-token", action="append", help="a valid refresh token (repeatable)")
    parser.add_argument("--expires-in", type=int, default=3600)
    parser.add_argument("--device-interval", type=int, default=1)
    parser.add_argument("--passwd-file")
    parser.add_argument("--passwd-template", default="user:{PLAIN}@TOKEN@::::::")
    args = parser.parse_args()
    Handler.provider = Provider(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
