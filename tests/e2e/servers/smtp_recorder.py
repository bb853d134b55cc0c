"""An SMTP server that records what it receives (run with Debian's python3,
which has python3-aiosmtpd): STARTTLS required before AUTH and MAIL,
AUTH PLAIN/LOGIN against one user whose password comes in $SMTP_PASSWORD,
and AUTH XOAUTH2 against the access token the test's OAuth2 provider
issued last: $SMTP_TOKEN_FILE is the passwd-file it rewrites for dovecot
(`user:{PLAIN}TOKEN::::::`), read at each AUTH. A refused token gets 535
at once, as Microsoft 365 answers, or, while RECEIVED_DIR/refuse-like
says `google`, first a 334 error challenge (base64 JSON) that the client
must acknowledge before the 535, as Google answers. Each message is written to
RECEIVED_DIR/<n>.json (envelope and data) with a temporary name and a
rename, so a reader never sees half of one; each XOAUTH2 attempt appends
{"mechanism", "user", "success"} (never the token) to RECEIVED_DIR/auth.jsonl,
with "challenge_reply" (what the client answered the error challenge)
when there was one.

usage: smtp_recorder.py PORT USER CERT KEY RECEIVED_DIR
"""

import asyncio
import base64
import binascii
import json
import os
import ssl
import sys
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

port, user, cert, key, received = sys.argv[1:6]
password = os.environ["SMTP_PASSWORD"].encode()
received = Path(received)
token_file = os.environ.get("SMTP_TOKEN_FILE")


def current_tokens() -> dict[bytes, bytes]:
    """user → the access token the provider issued last."""
    if not token_file or not os.path.exists(token_file):
        return {}
    tokens = {}
    for line in Path(token_file).read_bytes().splitlines():
        name, _, rest = line.partition(b":")
        if rest.startswith(b"{PLAIN}"):
            tokens[name] = rest[len(b"{PLAIN}"):].split(b":", 1)[0]
    return tokens


def refuse_like() -> str:
    """`google` or `microsoft` (the default): how a refused token is told."""
    try:
        return (received / "refuse-like").read_text().strip()
    except FileNotFoundError:
        return "microsoft"


class Recorder:
    def __init__(self):
        self.count = len(list(received.glob("*.json")))

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "authenticated": bool(session.authenticated),
        }
        temporary = received / f".{self.count:05}.tmp"
        temporary.write_text(json.dumps(record))
        temporary.rename(received / f"{self.count:05}.json")
        return "250 OK recorded"

    async def auth_XOAUTH2(self, server, args):
        """`AUTH XOAUTH2 <base64 user=U^Aauth=Bearer T^A^A>` (the initial
        response, or after an empty 334 challenge)."""
        if len(args) > 1:  # ["XOAUTH2", initial response]
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        fields = dict(part.split(b"=", 1) for part in blob.split(b"\x01") if b"=" in part)
        login = fields.get(b"user", b"")
        bearer = fields.get(b"auth", b"")
        token = current_tokens().get(login)
        success = token is not None and bearer == b"Bearer " + token
        attempt = {"mechanism": "XOAUTH2", "user": login.decode("utf-8", "replace"), "success": success}
        if not success and refuse_like() == "google":
            # Google's error challenge: JSON saying why, base64 (the
            # helper encodes it); the client's answer ends the exchange.
            reply = await server.challenge_auth(json.dumps(
                {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}))
            attempt["challenge_reply"] = "*" if reply is MISSING else reply.decode("utf-8", "replace")
        with open(received / "auth.jsonl", "a") as log:
            log.write(json.dumps(attempt) + "\n")
        if success:
            return AuthResult(success=True, auth_data=LoginPassword(login, b""))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() and auth_data.password == password:
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Recorder(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_require_tls=True,
    auth_required=True,
)
controller.start()
print(f"listening on 127.0.0.1:{port}", flush=True)
try:
    asyncio.run(asyncio.Event().wait())
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
