"""An SMTP server that records what it receives (run with Debian's python3,
which has python3-aiosmtpd): STARTTLS required before AUTH and MAIL,
AUTH PLAIN/LOGIN against one user whose password comes in $SMTP_PASSWORD.
Each message is written to RECEIVED_DIR/<n>.json (envelope and data) with
a temporary name and a rename, so a reader never sees half of one.

usage: smtp_recorder.py PORT USER CERT KEY RECEIVED_DIR
"""

import asyncio
import json
import os
import ssl
import sys
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, user, cert, key, received = sys.argv[1:6]
password = os.environ["SMTP_PASSWORD"].encode()
received = Path(received)


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
