"""The mail server through the gateway, as a host uses it (the official MCP
SDK over Streamable HTTP), against real servers this file starts: Debian's
dovecot over TLS and STARTTLS with maildirs written here (1,050 messages,
attachments with non-ASCII names, an invite, a 50 MiB message), an
aiosmtpd server with STARTTLS and AUTH that records what it receives, and
a real Secret Service (private dbus-daemon + gnome-keyring). Faults are
real too: a wrong password, a closed port, a server that accepts and never
answers, an untrusted certificate.

The last test scans every log line and error text of the file for the
passwords and the message bodies.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
import subprocess
import sys
import time
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from conftest import Stack, binary
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
import mail_servers  # noqa: E402

PASSWORD = "imap-Pa55-q7Zr-1f9e"
WRONG = "not-the-Pa55-8d2c"
REFRESH_1 = "refresh-one-6f1e2d"
REFRESH_2 = "refresh-two-9a8b7c"
REFRESH_3 = "refresh-three-4d5e6f"  # the account that sends over XOAUTH2
INBOX_SIZE = 1050
INVOICES = list(range(7, INBOX_SIZE, 50))  # subjects "Invoice #n"
ATTACHMENT_NAME = "Übersicht – März.pdf"
ATTACHMENT_BYTES = bytes(range(256)) * 300 + b"\x00\xff end"
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
BODY_MARK = "BODYMARK"  # every generated body carries it; no log may
ERRORS: list[str] = []  # every error text the tests saw, for the scan

INVITE = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//llmbasedos tests//EN\r
METHOD:REQUEST\r
BEGIN:VTIMEZONE\r
TZID:Europe/Paris\r
BEGIN:STANDARD\r
DTSTART:19701025T030000\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:19700329T020000\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:weekly-sync@example.org\r
DTSTAMP:20260101T000000Z\r
SUMMARY:Weekly sync\r
DTSTART;TZID=Europe/Paris:20260105T100000\r
DTEND;TZID=Europe/Paris:20260105T110000\r
RRULE:FREQ=WEEKLY;COUNT=6\r
EXDATE;TZID=Europe/Paris:20260119T100000\r
ORGANIZER;CN=Carol:mailto:carol@example.org\r
ATTENDEE;CN=Alice;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT:mailto:alice@example.org\r
END:VEVENT\r
END:VCALENDAR\r
"""


def plain(index: int, subject: str, sender: str = "carol@example.org", **headers) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "alice@example.org"
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(email.utils.localtime().replace(year=2025, month=1 + index % 12, day=1 + index % 28))
    message["Message-ID"] = f"<m{index}@example.org>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(f"Hello Alice, this is message {index}. {BODY_MARK}-{index} Größe\n")
    return message


def fixtures() -> tuple[list[tuple[bytes, str]], dict[str, int]]:
    """The INBOX (bytes, maildir flags) in uid order and the uids of the
    special messages."""
    messages: list[tuple[bytes, str]] = []
    special: dict[str, int] = {}
    for index in range(INBOX_SIZE):
        subject = f"Invoice #{index}" if index in INVOICES else f"Note {index}"
        flags = "" if index % 3 == 0 else "S"
        messages.append((plain(index, subject).as_bytes(), flags))
    # A message with a PDF whose name is non-ASCII (RFC 2231) and an inline
    # image inside multipart/related.
    related = MIMEMultipart("related")
    related.attach(MIMEText(f"<p>See the <b>figures</b> {BODY_MARK}-att</p><img src='cid:pixel@x'>", "html"))
    image = MIMEImage(PIXEL, "png")
    image.add_header("Content-ID", "<pixel@x>")
    image.add_header("Content-Disposition", "inline", filename="pixel.png")
    related.attach(image)
    mixed = MIMEMultipart("mixed")
    mixed.attach(related)
    pdf = MIMEApplication(ATTACHMENT_BYTES, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename=("utf-8", "", ATTACHMENT_NAME))
    mixed.attach(pdf)
    for name, value in (("From", "dave@example.org"), ("To", "alice@example.org"), ("Subject", "Report with attachment"),
                        ("Message-ID", "<attached@example.org>"), ("Date", email.utils.formatdate())):
        mixed[name] = value
    special["attachment"] = len(messages) + 1
    messages.append((mixed.as_bytes(), ""))
    # An invite.
    invite = MIMEMultipart("mixed")
    invite.attach(MIMEText(f"You are invited. {BODY_MARK}-invite"))
    calendar = MIMEText(INVITE, "calendar", "utf-8")
    calendar.set_param("method", "REQUEST")
    invite.attach(calendar)
    for name, value in (("From", "carol@example.org"), ("To", "alice@example.org"), ("Subject", "Invitation: Weekly sync"),
                        ("Message-ID", "<invite@example.org>"), ("Date", email.utils.formatdate())):
        invite[name] = value
    special["invite"] = len(messages) + 1
    messages.append((invite.as_bytes(), ""))
    # A message in a thread, to reply to.
    thread = plain(9001, "Plans for Friday", References="<root@example.org>", In_Reply_To="<root@example.org>")
    special["thread"] = len(messages) + 1
    messages.append((thread.as_bytes(), "S"))
    # Unseen, to read without marking it seen.
    special["unseen"] = len(messages) + 1
    messages.append((plain(9002, "Read me gently").as_bytes(), ""))
    # To move and flag.
    special["mutate_first"] = len(messages) + 1
    for index in range(5):
        messages.append((plain(9100 + index, f"Mutate {index}").as_bytes(), "S"))
    return messages, special


def big_message() -> bytes:
    """A 50 MiB message (one large attachment)."""
    message = MIMEMultipart("mixed")
    message["From"] = "eve@example.org"
    message["To"] = "alice@example.org"
    message["Subject"] = "Huge"
    message["Message-ID"] = "<huge@example.org>"
    message.attach(MIMEText(f"big {BODY_MARK}-huge"))
    message.attach(MIMEApplication(os.urandom(38 * 1024 * 1024), "octet-stream"))
    data = message.as_bytes()
    assert len(data) > 50 * 1024 * 1024
    return data


PARTS_PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"%%EOF"
PARTS_ZIP = b"PK\x03\x04" + bytes(reversed(range(256))) * 9
LONG_LINES = 8000  # ~400 KB of text in each long message


def long_text() -> str:
    return "".join(f"Zeile {line}: Grüße — 東京 ✓ 𝄞 {BODY_MARK}-long\n" for line in range(LONG_LINES))


def parts() -> list[tuple[bytes, str]]:
    """The folder Parts, in uid order: one message of nested multiparts
    (alternative inside mixed, related inside alternative, an embedded
    message with its own attachment; base64 and quoted-printable parts,
    non-ASCII names), then one long text in each transfer encoding (8bit,
    quoted-printable, base64)."""
    from email.charset import BASE64, QP, Charset
    from email.mime.message import MIMEMessage

    def charset(name: str, encoding) -> Charset:
        chosen = Charset(name)
        chosen.body_encoding = encoding
        return chosen

    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(f"Grüße {BODY_MARK}-parts plain\n", "plain", charset("utf-8", QP)))
    related = MIMEMultipart("related")
    related.attach(MIMEText(f"<p>Voir {BODY_MARK}-parts <img src='cid:logo@x'></p>", "html"))
    logo = MIMEImage(PIXEL, "png")
    logo.add_header("Content-ID", "<logo@x>")
    logo.add_header("Content-Disposition", "inline", filename=("utf-8", "", "logo – ü.png"))
    related.attach(logo)
    alternative.attach(related)
    mixed = MIMEMultipart("mixed")
    mixed.attach(alternative)
    pdf = MIMEApplication(PARTS_PDF, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "Résumé – März.pdf"))
    mixed.attach(pdf)
    notes = MIMEText("Grüße aus Köln\n", "plain", charset("iso-8859-1", QP))
    notes.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "Notizen über Köln.txt"))
    mixed.attach(notes)
    inner = MIMEMultipart("mixed")
    inner["Subject"] = "inner"
    inner.attach(MIMEText(f"inner text {BODY_MARK}-inner"))
    archive = MIMEApplication(PARTS_ZIP, "zip")
    archive.add_header("Content-Disposition", "attachment", filename="archiv.zip")
    inner.attach(archive)
    mixed.attach(MIMEMessage(inner))
    for name, value in (("From", "dave@example.org"), ("To", "alice@example.org"), ("Subject", "Nested parts"),
                        ("Message-ID", "<parts@example.org>"), ("Date", email.utils.formatdate())):
        mixed[name] = value
    messages = [mixed.as_bytes()]
    text = long_text()
    head = (b"From: eve@example.org\nTo: alice@example.org\nDate: Mon, 05 Jan 2026 10:00:00 +0000\n"
            b"MIME-Version: 1.0\n")
    messages.append(head + b"Subject: Long 8bit\nContent-Type: text/plain; charset=utf-8\n"
                    b"Content-Transfer-Encoding: 8bit\n\n" + text.encode())
    for subject, encoding in (("Long quoted-printable", QP), ("Long base64", BASE64)):
        long = MIMEText(text, "plain", charset("utf-8", encoding))
        for name, value in (("From", "eve@example.org"), ("To", "alice@example.org"), ("Subject", subject)):
            long[name] = value
        messages.append(long.as_bytes())
    return [(data, "") for data in messages]


def malformed() -> list[tuple[bytes, str]]:
    """Broken mail as it arrives from the world, for the folder Broken, in
    uid order: a multipart whose boundary never appears and never closes,
    a charset nobody knows, base64 cut off mid-quantum (body and
    attachment), and raw 8-bit UTF-8 in the headers."""
    head = (b"From: mallory@example.org\r\nTo: alice@example.org\r\nDate: Mon, 05 Jan 2026 10:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\n")
    boundary = head + (b"Subject: Broken boundary\r\nMessage-ID: <broken1@example.org>\r\n"
                       b"Content-Type: multipart/mixed; boundary=\"never-used\"\r\n\r\n"
                       b"--other-boundary\r\nContent-Type: text/plain\r\n\r\n"
                       + f"{BODY_MARK}-boundary part one\r\n".encode()
                       + b"--other-boundary\r\nContent-Type: application/pdf; name=x.pdf\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\n")
    charset = head + (b"Subject: Bad charset\r\nMessage-ID: <broken2@example.org>\r\n"
                      b"Content-Type: text/plain; charset=x-no-such-charset-42\r\n"
                      b"Content-Transfer-Encoding: 8bit\r\n\r\n"
                      + f"{BODY_MARK}-charset caf".encode() + b"\xe9 \xff\xfe end\r\n")
    truncated = head + (b"Subject: Truncated base64\r\nMessage-ID: <broken3@example.org>\r\n"
                        b"Content-Type: multipart/mixed; boundary=\"b3\"\r\n\r\n"
                        b"--b3\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                        + base64.b64encode(f"{BODY_MARK}-truncated hello world".encode())[:-3] + b"\r\n"
                        b"--b3\r\nContent-Type: application/octet-stream\r\n"
                        b"Content-Disposition: attachment; filename=\"cut.bin\"\r\n"
                        b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcI!!CQ\r\n")  # no closing boundary
    eight_bit = head.replace(b"mallory@example.org", "Mälory Ünïcode <mallory@example.org>".encode()) + (
        "Subject: Grüße aus Köln – ohne Kodierung\r\n".encode() + b"Message-ID: <broken4@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + f"{BODY_MARK}-8bit Grüße\r\n".encode())
    # Invalid base64 (a character outside the alphabet) in an attachment
    # whose boundaries are all there.
    bad_base64 = head + (b"Subject: Invalid base64\r\nMessage-ID: <broken5@example.org>\r\n"
                         b"Content-Type: multipart/mixed; boundary=\"b5\"\r\n\r\n"
                         b"--b5\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                         + f"{BODY_MARK}-bad base64 see attached".encode() + b"\r\n"
                         b"--b5\r\nContent-Type: application/pdf\r\n"
                         b"Content-Disposition: attachment; filename=\"bad.pdf\"\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK*%$AAAA\r\nJVBERi0xLjQK\r\n"
                         b"--b5--\r\n")
    return [(data, "") for data in (boundary, charset, truncated, eight_bit, bad_base64)]


class World:
    """The real servers and the stack (gateway + mail server) of this file."""

    def __init__(self, root: Path):
        self.root = root
        self.cert, self.key = mail_servers.make_certificate(root)
        self.dovecot = mail_servers.Dovecot(root / "dovecot", {"alice": PASSWORD}, self.cert, self.key,
                                            token_users=["olivia"])
        self.inbox, self.special = fixtures()
        self.dovecot.deliver("alice", self.inbox)
        self.dovecot.deliver("alice", [(big_message(), "")], folder="Big")
        self.dovecot.deliver("alice", malformed(), folder="Broken")
        self.dovecot.deliver("alice", parts(), folder="Parts")
        self.dovecot.deliver("alice", [(plain(9500, "Arrival 0").as_bytes(), "")], folder="Arrivals")
        self.dovecot.deliver("olivia", [(plain(n, f"Token mail {n}").as_bytes(), "") for n in range(3)])
        self.dovecot.start()
        self.oauth = mail_servers.OAuthProvider(root / "oauth", "llmbasedos-test", [REFRESH_1, REFRESH_2, REFRESH_3],
                                                self.dovecot.token_passwd, "olivia").start()
        self.smtp = mail_servers.SmtpRecorder(root / "smtp", "alice", PASSWORD, self.cert, self.key,
                                              token_file=self.dovecot.token_passwd).start()
        # A dovecot of its own for the test that stops and restarts it
        # (started there; the other tests' server is never stopped).
        self.flaky = mail_servers.Dovecot(root / "dovecot-flaky", {"alice": PASSWORD}, self.cert, self.key)
        self.flaky.deliver("alice", [(plain(n, f"Flaky {n}").as_bytes(), "") for n in range(2)])
        self.secret_service = mail_servers.SecretService(root / "secret-service").start()
        self.silent = mail_servers.SilentServer()
        self.closed_port = mail_servers.free_port()
        self.accounts = root / "mail_accounts.yaml"
        self.write_accounts()
        self.secrets_dir = root / "secrets"
        self.credentials = root / "credentials"
        self.credentials.mkdir()
        (self.credentials / "starttls.password").write_text(PASSWORD + "\n")
        # OAuth2: one account's first refresh token as a systemd credential,
        # the other's as a private file.
        (self.credentials / "oauth.oauth2").write_text(REFRESH_1 + "\n")
        self.add_secret("work", PASSWORD)
        for account, secret in (("readonly", PASSWORD), ("wrongpw", WRONG), ("down", PASSWORD), ("hung", PASSWORD),
                                ("badcert", PASSWORD), ("leaky", PASSWORD), ("flaky", PASSWORD)):
            self.write_secret_file(account, secret)
        (self.secrets_dir / "leaky.password").chmod(0o644)
        (self.secrets_dir / "bearer.oauth2").write_text(REFRESH_2)
        (self.secrets_dir / "bearer.oauth2").chmod(0o600)
        (self.secrets_dir / "oauthsend.oauth2").write_text(REFRESH_3)
        (self.secrets_dir / "oauthsend.oauth2").chmod(0o600)
        (root / "stack").mkdir()
        self.stack = Stack(root / "stack")

    def write_accounts(self):
        d = self.dovecot
        tls = f"{{host: 127.0.0.1, port: {d.imaps_port}, security: tls}}"
        common = f"    email: alice@example.org\n    username: alice\n    ca_file: {self.cert}\n"
        self.accounts.write_text(f"""accounts:
  work:
{common}    display_name: Alice Example
    imap: {tls}
    smtp: {{host: 127.0.0.1, port: {self.smtp.port}, security: starttls}}
    send:
      allowed_recipients: ["*@example.org"]
      rate_per_minute: 5
  starttls:
{common}    imap: {{host: 127.0.0.1, port: {d.imap_port}, security: starttls}}
  readonly:
{common}    imap: {tls}
    smtp: {{host: 127.0.0.1, port: {self.smtp.port}, security: starttls}}
  wrongpw:
{common}    imap: {tls}
  down:
{common}    imap: {{host: 127.0.0.1, port: {self.closed_port}, security: tls}}
  hung:
{common}    imap: {{host: 127.0.0.1, port: {self.silent.port}, security: tls}}
  leaky:
{common}    imap: {tls}
  oauth:
    email: olivia@example.org
    username: olivia
    ca_file: {self.cert}
    auth: oauth2
    oauth2: {{provider: custom, client_id: llmbasedos-test, token_endpoint: "{self.oauth.url}/token", device_authorization_endpoint: "{self.oauth.url}/device"}}
    imap: {tls}
  bearer:
    email: olivia@example.org
    username: olivia
    ca_file: {self.cert}
    auth: oauth2
    oauth2: {{provider: custom, client_id: llmbasedos-test, token_endpoint: "{self.oauth.url}/token", mechanism: oauthbearer}}
    imap: {tls}
  badcert:
    email: alice@example.org
    username: alice
    imap: {tls}
  oauthsend:
    email: olivia@example.org
    username: olivia
    ca_file: {self.cert}
    auth: oauth2
    oauth2: {{provider: custom, client_id: llmbasedos-test, token_endpoint: "{self.oauth.url}/token"}}
    imap: {tls}
    smtp: {{host: 127.0.0.1, port: {self.smtp.port}, security: starttls}}
    send:
      allowed_recipients: ["*@example.org"]
  device:
    email: olivia@example.org
    username: olivia
    ca_file: {self.cert}
    auth: oauth2
    oauth2: {{provider: custom, client_id: llmbasedos-test, token_endpoint: "{self.oauth.url}/token", device_authorization_endpoint: "{self.oauth.url}/device"}}
    imap: {tls}
  flaky:
{common}    imap: {{host: 127.0.0.1, port: {self.flaky.imaps_port}, security: tls}}
""")

    def add_secret(self, account: str, secret: str):
        """`llmbasedos-mail add-secret`, the secret on stdin: it goes to the
        Secret Service (a session bus is there)."""
        done = subprocess.run(
            [str(binary("llmbasedos-mail")), "--accounts", str(self.accounts), "--secrets-dir", str(self.secrets_dir),
             "add-secret", account],
            input=secret + "\n", capture_output=True, text=True, timeout=30,
            env={**os.environ, **self.secret_service.env},
        )
        assert done.returncode == 0, done.stderr
        assert "Secret Service" in done.stderr, done.stderr
        assert secret not in done.stderr + done.stdout
        assert not (self.secrets_dir / f"{account}.password").exists()

    def write_secret_file(self, account: str, secret: str):
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        path = self.secrets_dir / f"{account}.password"
        path.write_text(secret)
        path.chmod(0o600)

    def start_stack(self):
        self.stack.publish_caps("mail", "llmbasedos-mail")
        self.start_mail_server()
        # Two OAuth2 connection attempts of up to 4 s each fit in one call.
        self.stack.start_gateway(overrides={"limits": {"backend_timeout_secs": 15}})

    def start_mail_server(self):
        self.stack.start_backend(
            "mail",
            "llmbasedos-mail",
            env={
                "LLMBASEDOS_MAIL_ACCOUNTS": str(self.accounts),
                "LLMBASEDOS_MAIL_SECRETS_DIR": str(self.secrets_dir),
                "CREDENTIALS_DIRECTORY": str(self.credentials),
                "LLMBASEDOS_MAIL_CONNECT_TIMEOUT": "2",
                "LLMBASEDOS_MAIL_LOGIN_TIMEOUT": "4",
                "LLMBASEDOS_MAIL_COMMAND_TIMEOUT": "3",
                "LLMBASEDOS_LOG": os.environ.get("MAIL_DEBUG_LOG", "info"),
                **self.secret_service.env,
            },
        )

    def restart_mail_server(self):
        self.stack.backends.pop("mail").stop()
        self.start_mail_server()

    def logs(self) -> dict[str, str]:
        paths = list(self.stack.root.glob("*.log")) + [self.smtp.dir / "smtp.log"]
        return {str(path): path.read_text(errors="replace") for path in paths if path.exists()}

    def stop(self):
        self.stack.stop()
        self.silent.stop()
        self.secret_service.stop()
        self.oauth.stop()
        self.smtp.stop()
        self.flaky.stop()
        self.dovecot.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = World(tmp_path_factory.mktemp("mail"))
    try:
        world.start_stack()
        yield world
    finally:
        world.stop()


def call(world: World, tool: str, arguments: dict, mode: str = "legacy"):
    async def scenario():
        target = streamable_http_client(world.stack.url, http_client=create_mcp_http_client(headers=world.stack.auth))
        async with Client(target, mode=mode) as client:
            return await client.call_tool(tool, arguments)

    result = asyncio.run(scenario())
    if result.is_error:
        ERRORS.append(" ".join(getattr(block, "text", "") for block in result.content))
    return result


def ok(world: World, tool: str, arguments: dict) -> dict:
    result = call(world, tool, arguments)
    assert result.is_error is False, result.content
    return result.structured_content


def refused(world: World, tool: str, arguments: dict, *expected: str) -> str:
    result = call(world, tool, arguments)
    assert result.is_error is True, result.structured_content
    text = " ".join(getattr(block, "text", "") for block in result.content)
    for words in expected:
        assert words in text, text
    # The server still serves.
    assert ok(world, "mail_listAccounts", {})["accounts"]
    return text


def inbox_page(world: World, **arguments) -> dict:
    return ok(world, "mail_listMessages", {"account": "work", "folder": "INBOX", **arguments})


def folders_of(world: World, account: str) -> dict:
    return {folder["name"]: folder for folder in ok(world, "mail_listFolders", {"account": account})["folders"]}


def new_session(world: World):
    """Dovecot ends olivia's sessions, so the next call connects again
    (its pooled session fails the NOOP sent after imap::NOOP_AFTER, 2 s),
    and the provider forgets the access token it issued last. dovecot
    re-reads its token file when the file's mtime changes: the waits keep
    writes a second apart."""
    world.oauth.admin("expire")
    world.dovecot.kick("olivia")
    time.sleep(2.5)


def test_tools_accounts_and_folders_over_tls_and_starttls(world: World):
    async def tools():
        target = streamable_http_client(world.stack.url, http_client=create_mcp_http_client(headers=world.stack.auth))
        async with Client(target, mode="legacy") as client:
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    listed = asyncio.run(tools())
    names = {"mail_listAccounts", "mail_listFolders", "mail_listMessages", "mail_getMessage", "mail_getAttachment",
             "mail_parseIcalendar", "mail_setFlags", "mail_moveMessages", "mail_send", "mail_saveDraft"}
    assert names <= set(listed)
    assert listed["mail_listMessages"].annotations.read_only_hint is True
    assert listed["mail_getMessage"].annotations.read_only_hint is True
    for mutating in ("mail_send", "mail_moveMessages", "mail_setFlags", "mail_saveDraft"):
        assert listed[mutating].annotations.read_only_hint is False, mutating
        assert listed[mutating].annotations.idempotent_hint is False, mutating

    accounts = {account["name"]: account for account in ok(world, "mail_listAccounts", {})["accounts"]}
    assert accounts["work"]["can_send"] is True and accounts["work"]["allowed_recipients"] == ["*@example.org"]
    assert accounts["readonly"]["can_send"] is False
    assert PASSWORD not in json.dumps(accounts)

    for account in ("work", "starttls"):
        folders = {folder["name"]: folder for folder in ok(world, "mail_listFolders", {"account": account})["folders"]}
        assert folders["INBOX"]["messages"] == len(world.inbox), account
        assert folders["INBOX"]["unseen"] == sum(1 for _, flags in world.inbox if "S" not in flags)
        assert folders["Drafts"]["special_use"] == "drafts"
        assert folders["Trash"]["special_use"] == "trash"


def test_a_thousand_messages_page_by_page_and_searched_on_the_server(world: World):
    seen: list[int] = []
    cursor = None
    for _ in range(20):  # bounded: 1,060 messages at 100 a page is 11 pages
        arguments = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = inbox_page(world, **arguments)
        assert page["total"] == len(world.inbox)
        seen.extend(message["uid"] for message in page["messages"])
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert len(seen) == len(world.inbox) and len(set(seen)) == len(seen)
    assert seen == sorted(seen, reverse=True), "newest (highest uid) first"

    first = inbox_page(world, limit=3)
    newest = first["messages"][0]
    assert newest["subject"] == "Mutate 4" and newest["from"] == "carol@example.org"
    assert "message 9104" in newest["preview"]

    invoices = inbox_page(world, limit=100, search={"subject": "Invoice"})
    assert invoices["total"] == len(INVOICES)
    assert sorted(message["subject"] for message in invoices["messages"]) == sorted(f"Invoice #{n}" for n in INVOICES)
    unseen_invoices = inbox_page(world, limit=100, search={"subject": "Invoice", "seen": False})
    assert {message["subject"] for message in unseen_invoices["messages"]} == {
        f"Invoice #{n}" for n in INVOICES if n % 3 == 0
    }
    assert all(message["seen"] is False for message in unseen_invoices["messages"])
    # Non-ASCII text goes as a UTF-8 literal; every generated body has it.
    assert inbox_page(world, limit=1, search={"body": "Größe"})["total"] == INBOX_SIZE + 2 + 5
    with_attachments = inbox_page(world, limit=10, search={"has_attachment": True})
    assert {message["uid"] for message in with_attachments["messages"]} == {
        world.special["attachment"], world.special["invite"]
    }
    refused(world, "mail_listMessages", {"account": "work", "search": {"since": "last week"}}, "since")


def test_a_message_that_arrives_between_two_calls_is_in_the_second(world: World):
    # Sequential calls get the same pooled session, which keeps the folder
    # open between them: the second call must still see what came since
    # (delivered into the maildir as an MDA would), in pages and searches.
    def arrivals(**arguments) -> dict:
        return ok(world, "mail_listMessages", {"account": "work", "folder": "Arrivals", **arguments})

    assert [message["subject"] for message in arrivals()["messages"]] == ["Arrival 0"]
    for n in (1, 2):
        world.dovecot.deliver("alice", [(plain(9500 + n, f"Arrival {n}").as_bytes(), "")], folder="Arrivals")
        page = arrivals()
        assert page["total"] == n + 1
        assert [message["subject"] for message in page["messages"]] == [f"Arrival {k}" for k in range(n, -1, -1)]
        assert arrivals(search={"subject": f"Arrival {n}"})["total"] == 1


def test_reading_a_message_leaves_it_unseen(world: World):
    uid = world.special["unseen"]
    before = world.dovecot.flags_on_disk("alice")
    message = ok(world, "mail_getMessage", {"account": "work", "folder": "INBOX", "uid": uid})
    assert message["subject"] == "Read me gently"
    assert message["message_id"] == "m9002@example.org"
    assert f"{BODY_MARK}-9002" in message["body"]["text"]
    assert message["seen"] is False and "\\Seen" not in message["flags"]
    assert "instructions" in message["notice"]
    assert world.dovecot.flags_on_disk("alice") == before
    listed = inbox_page(world, limit=100, search={"subject": "Read me gently"})["messages"]
    assert [item["seen"] for item in listed] == [False]
    window = ok(world, "mail_getMessage", {"account": "work", "uid": uid, "max_body_chars": 10, "body_offset": 6})
    assert window["body"]["text"] == "Alice, thi" and window["body"]["has_more"] is True


def test_an_attachment_with_a_non_ascii_name_comes_back_byte_for_byte(world: World):
    uid = world.special["attachment"]
    message = ok(world, "mail_getMessage", {"account": "work", "uid": uid})
    assert message["body"]["source"] == "html" and "figures" in message["body"]["text"]
    attachments = {attachment["name"]: attachment for attachment in message["attachments"]}
    pdf = attachments[ATTACHMENT_NAME]
    assert pdf["content_type"] == "application/pdf" and pdf["size"] == len(ATTACHMENT_BYTES)
    fetched = ok(world, "mail_getAttachment", {"account": "work", "uid": uid, "part": pdf["part_id"]})
    assert base64.b64decode(fetched["data"]) == ATTACHMENT_BYTES
    assert fetched["name"] == ATTACHMENT_NAME
    pixel = attachments["pixel.png"]
    assert pixel["inline"] is True
    image = call(world, "mail_getAttachment", {"account": "work", "uid": uid, "part": pixel["part_id"]})
    assert image.is_error is False
    assert image.content[0].type == "image" and base64.b64decode(image.content[0].data) == PIXEL
    refused(world, "mail_getAttachment", {"account": "work", "uid": uid, "part": "9"}, "no part 9")


def test_parts_are_fetched_alone_byte_for_byte(world: World):
    message = ok(world, "mail_getMessage", {"account": "work", "folder": "Parts", "uid": 1})
    assert message["subject"] == "Nested parts" and f"{BODY_MARK}-parts plain" in message["body"]["text"]
    attachments = {attachment["part_id"]: attachment for attachment in message["attachments"]}
    expected = {  # part id: name, bytes
        "1.2.2": ("logo – ü.png", PIXEL),
        "2": ("Résumé – März.pdf", PARTS_PDF),
        "3": ("Notizen über Köln.txt", "Grüße aus Köln\r\n".encode()),
        "4.2": ("archiv.zip", PARTS_ZIP),
    }
    for part, (name, data) in expected.items():
        listed = attachments[part]
        assert listed["name"] == name and listed["size"] == len(data), listed
        arguments = {"account": "work", "folder": "Parts", "uid": 1, "part": part}
        if name.endswith(".png"):  # an image reaches the host as image content
            image = call(world, "mail_getAttachment", arguments)
            assert image.is_error is False and base64.b64decode(image.content[0].data) == data, part
            continue
        fetched = ok(world, "mail_getAttachment", arguments)
        assert fetched["name"] == name and base64.b64decode(fetched["data"]) == data, part
    assert attachments["1.2.2"]["inline"] is True
    embedded = ok(world, "mail_getAttachment", {"account": "work", "folder": "Parts", "uid": 1, "part": "4"})
    assert embedded["content_type"] == "message/rfc822"
    assert f"{BODY_MARK}-inner".encode() in base64.b64decode(embedded["data"])
    refused(world, "mail_getAttachment", {"account": "work", "folder": "Parts", "uid": 1, "part": "1"},
            "multipart container")
    refused(world, "mail_getAttachment", {"account": "work", "folder": "Parts", "uid": 1, "part": "4.9"},
            "no part 4.9")
    refused(world, "mail_getAttachment", {"account": "work", "folder": "Parts", "uid": 1, "part": "2.1"},
            "no part 2.1")
    # The 50 MiB message's attachment is refused by its stored size,
    # before it is fetched; its text part is fetched alone.
    refused(world, "mail_getAttachment", {"account": "work", "folder": "Big", "uid": 1, "part": "2"},
            "part 2 of message 1", "over the limit")
    text = ok(world, "mail_getAttachment", {"account": "work", "folder": "Big", "uid": 1, "part": "1"})
    assert base64.b64decode(text["data"]).startswith(f"big {BODY_MARK}-huge".encode())


def test_a_long_text_is_read_by_its_start_in_every_encoding(world: World):
    for uid in (2, 3, 4):
        # The widest window, the reference the narrow ones are held to.
        whole = ok(world, "mail_getMessage", {"account": "work", "folder": "Parts", "uid": uid,
                                              "max_body_chars": 100000})["body"]
        assert len(whole["text"]) == 100000 and whole["has_more"] is True
        # A window past the end needs the whole text: read whole, counted.
        past = ok(world, "mail_getMessage", {"account": "work", "folder": "Parts", "uid": uid,
                                             "body_offset": 10**8, "max_body_chars": 10})["body"]
        total = past["total_chars"]
        assert total > 300000 and past["text"] == "" and past["has_more"] is False
        assert whole["text"].startswith("Zeile 0: Grüße — 東京 ✓ 𝄞 ")
        for offset, chars in ((0, 50), (7, 3000), (12345, 5000), (0, 0)):
            window = ok(world, "mail_getMessage", {"account": "work", "folder": "Parts", "uid": uid,
                                                   "body_offset": offset, "max_body_chars": chars})["body"]
            # Read by its start: the total is not counted.
            assert "total_chars" not in window, (uid, offset)
            assert window["text"] == whole["text"][offset:offset + chars], (uid, offset)
            assert window["offset"] == offset and window["has_more"] is True
        # A window reaching the end reads it whole and says it ends.
        end = ok(world, "mail_getMessage", {"account": "work", "folder": "Parts", "uid": uid,
                                            "body_offset": total - 10, "max_body_chars": 100})["body"]
        assert end["total_chars"] == total and end["has_more"] is False and len(end["text"]) == 10
        assert end["text"].endswith("-long\n") or end["text"].endswith("-long\r\n"), end["text"]


def test_an_invite_is_read_with_its_zone_recurrence_and_exception(world: World):
    parsed = ok(world, "mail_parseIcalendar", {
        "account": "work", "uid": world.special["invite"], "from": "2026-01-01", "to": "2026-03-01",
    })
    assert parsed["method"] == "REQUEST"
    [event] = parsed["entries"]
    assert event["summary"] == "Weekly sync"
    starts = [occurrence["start"] for occurrence in parsed["expansion"]["occurrences"]]
    assert len(starts) == 5, starts  # six weekly, one excluded
    text = json.dumps(starts)
    assert "2026-01-19" not in text and "2026-01-12" in text and "Europe/Paris" in text
    assert "09:00:00" in text  # 10:00 in Paris is 09:00 UTC in winter
    refused(world, "mail_parseIcalendar", {"ical": "BEGIN:VCALENDAR\r\nthis is not ical\r\n"}, "iCalendar")


def test_a_reply_arrives_threaded(world: World):
    uid = world.special["thread"]
    sent = ok(world, "mail_send", {
        "account": "work", "to": "carol@example.org", "body": "Friday works for me.",
        "in_reply_to": {"folder": "INBOX", "uid": uid},
    })
    assert sent["in_reply_to"] == "<m9001@example.org>"
    [received] = [message for message in world.smtp.messages() if sent["message_id"] in message["data"]]
    assert received["rcpt_tos"] == ["carol@example.org"] and received["authenticated"] is True
    assert received["mail_from"] == "alice@example.org"
    data = received["data"]
    assert "In-Reply-To: <m9001@example.org>" in data, data
    assert "References: <root@example.org> <m9001@example.org>" in data, data
    assert "Subject: Re: Plans for Friday" in data
    flags = ok(world, "mail_getMessage", {"account": "work", "uid": uid, "body": False})["flags"]
    assert "\\Answered" in flags


def test_flags_and_moves_touch_exactly_the_uids_given(world: World):
    first = world.special["mutate_first"]
    uids = [first, first + 1, first + 2]
    flagged = ok(world, "mail_setFlags", {"account": "work", "folder": "INBOX", "uids": uids, "add": ["\\Flagged"],
                                          "remove": ["\\Seen"]})
    assert flagged["uids"] == uids and flagged["missing"] == []
    assert all("\\Flagged" in flagged["flags"][str(uid)] and "\\Seen" not in flagged["flags"][str(uid)] for uid in uids)
    on_disk = inbox_page(world, limit=10, search={"flagged": True})["messages"]
    assert sorted(message["uid"] for message in on_disk) == uids

    before = ok(world, "mail_listFolders", {"account": "work"})["folders"]
    count = {folder["name"]: folder["messages"] for folder in before}
    moved = ok(world, "mail_moveMessages", {"account": "work", "folder": "INBOX", "uids": [first, first + 3, 999999],
                                            "to": "Archive"})
    assert moved["uids"] == [first, first + 3] and moved["missing"] == [999999]
    after = {folder["name"]: folder["messages"] for folder in ok(world, "mail_listFolders", {"account": "work"})["folders"]}
    assert after["INBOX"] == count["INBOX"] - 2 and after["Archive"] == count["Archive"] + 2
    archived = ok(world, "mail_listMessages", {"account": "work", "folder": "Archive", "limit": 10})["messages"]
    assert {"Mutate 0", "Mutate 3"} <= {message["subject"] for message in archived}
    remaining = {message["subject"] for message in inbox_page(world, limit=10, search={"subject": "Mutate"})["messages"]}
    assert remaining == {"Mutate 1", "Mutate 2", "Mutate 4"}
    refused(world, "mail_setFlags", {"account": "work", "folder": "INBOX", "uids": [first + 1], "add": ["\\Deleted"]},
            "moveMessages")


def test_a_draft_is_saved_in_drafts(world: World):
    saved = ok(world, "mail_saveDraft", {"account": "readonly", "to": "someone@elsewhere.example", "subject": "Draft one",
                                         "body": "not sent"})
    assert saved["folder"] == "Drafts"
    drafts = ok(world, "mail_listMessages", {"account": "work", "folder": "Drafts", "limit": 5})["messages"]
    assert [draft["subject"] for draft in drafts] == ["Draft one"]
    assert "\\Draft" in drafts[0]["flags"]


def test_oauth2_sends_over_smtp_with_xoauth2_and_a_stale_token_is_replaced(world: World):
    def send(tag: str):
        sent = ok(world, "mail_send", {"account": "oauthsend", "to": "carol@example.org", "subject": f"oauth {tag}",
                                       "body": f"{BODY_MARK}-oauth-{tag}"})
        [received] = [message for message in world.smtp.messages() if sent["message_id"] in message["data"]]
        assert received["authenticated"] is True and received["mail_from"] == "olivia@example.org", received
        assert received["rcpt_tos"] == ["carol@example.org"]

    def attempts_after(before: int) -> list[bool]:
        attempts = world.smtp.oauth_attempts()[before:]
        assert all(attempt["mechanism"] == "XOAUTH2" and attempt["user"] == "olivia" for attempt in attempts), attempts
        return [attempt["success"] for attempt in attempts]

    def refreshes_with(token: str) -> int:
        return sum(1 for r in world.oauth.admin("state")["requests"]
                   if r["form"].get("grant_type") == "refresh_token" and r["form"].get("refresh_token") == token)

    # Access tokens that live one second: the first send gets one, the
    # next one (a second later) refreshes before it sends, unrefused.
    world.oauth.admin("config", {"expires_in": 1})
    before = len(world.smtp.oauth_attempts())
    send("first")
    assert attempts_after(before) == [True]
    assert refreshes_with(REFRESH_3) == 1
    time.sleep(1.1)
    send("after expiry")
    assert attempts_after(before) == [True, True]
    assert refreshes_with(REFRESH_3) == 2
    # A token good for an hour, cached; the provider then stops honouring
    # it (the recorder checks the provider's current token): the refused
    # AUTH is answered by one refresh and a second AUTH, unnoticed.
    world.oauth.admin("config", {"expires_in": 3600})
    time.sleep(1.1)
    send("cached")
    assert refreshes_with(REFRESH_3) == 3
    send("cached again")
    assert refreshes_with(REFRESH_3) == 3, "the hour-long token is reused"
    world.oauth.admin("expire")
    before = len(world.smtp.oauth_attempts())
    send("stale")
    assert attempts_after(before) == [False, True]
    assert refreshes_with(REFRESH_3) == 4
    # Google tells a refused token with a 334 error challenge first, which
    # must be acknowledged with an empty line before its 535: the stale
    # token is replaced just the same.
    world.smtp.refuse_like("google")
    try:
        world.oauth.admin("expire")
        before = len(world.smtp.oauth_attempts())
        send("stale at google")
        assert attempts_after(before) == [False, True]
        refused = world.smtp.oauth_attempts()[before]
        assert refused.get("challenge_reply") == "", refused
        assert refreshes_with(REFRESH_3) == 5
    finally:
        world.smtp.refuse_like("microsoft")


def test_oauth2_tokens_are_refreshed_rotated_and_revoked_clearly(world: World):
    # Access tokens live one second: each new connection needs a refresh
    # (the client refreshes a margin before expiry).
    world.oauth.admin("config", {"expires_in": 1})
    # OAUTHBEARER, the refresh token from a private file.
    assert folders_of(world, "bearer")["INBOX"]["messages"] == 3
    time.sleep(1.1)
    # XOAUTH2, the refresh token from the systemd credential.
    assert folders_of(world, "oauth")["INBOX"]["messages"] == 3
    issued = world.oauth.admin("state")["issued"]
    new_session(world)
    # The expired access token is replaced without the caller noticing.
    assert folders_of(world, "oauth")["INBOX"]["messages"] == 3
    state = world.oauth.admin("state")
    assert state["issued"] == issued + 1
    refreshes = [r["form"] for r in state["requests"] if r["form"].get("grant_type") == "refresh_token"]
    # REFRESH_3 is the sending account's (the test above).
    assert {r["refresh_token"] for r in refreshes} - {REFRESH_3} == {REFRESH_1, REFRESH_2}
    # The provider rotates: the new refresh token is stored, and used by
    # the next server process (not only kept in memory).
    world.oauth.admin("rotate", {"enabled": True})
    new_session(world)
    assert folders_of(world, "oauth")["INBOX"]["messages"] == 3
    rotated = [token for token in world.oauth.admin("state")["refresh_tokens"] if token not in (REFRESH_1, REFRESH_2)]
    assert rotated, world.oauth.admin("state")["refresh_tokens"]
    world.oauth.admin("rotate", {"enabled": False})
    world.restart_mail_server()
    time.sleep(1.1)
    assert folders_of(world, "oauth")["INBOX"]["messages"] == 3
    last = [r["form"] for r in world.oauth.admin("state")["requests"] if r["form"].get("grant_type") == "refresh_token"][-1]
    assert last["refresh_token"] in rotated
    # Tokens the provider stops honouring before they expire (revoked
    # early, or replaced: dovecot holds only the newest one it issued) are
    # refused at AUTHENTICATE and replaced by a fresh one on a new
    # connection, unnoticed by the caller: OAUTHBEARER (whose error
    # challenge is answered with %x01), then XOAUTH2.
    world.oauth.admin("config", {"expires_in": 3600})
    for account in ("bearer", "oauth"):
        new_session(world)
        assert folders_of(world, account)["INBOX"]["messages"] == 3  # a token good for an hour, cached
        new_session(world)  # the provider forgets it; dovecot refuses it
        issued = world.oauth.admin("state")["issued"]
        assert folders_of(world, account)["INBOX"]["messages"] == 3, account
        assert world.oauth.admin("state")["issued"] == issued + 1, account
    # Revoked: a clear error saying to run authorize.
    world.oauth.admin("revoke")
    new_session(world)
    refused(world, "mail_listFolders", {"account": "oauth"}, "authorize oauth")
    assert ok(world, "mail_listFolders", {"account": "work"})["folders"]


def test_authorize_runs_the_device_grant_and_stores_the_refresh_token_privately(world: World):
    """`llmbasedos-mail authorize` (RFC 8628) in a terminal: it prints the
    code and the address, waits for the user's approval (given here through
    the provider), and stores the refresh token in a private file (no
    Secret Service in its environment), never printing it; the running
    server then logs in with it."""
    stored = world.secrets_dir / "device.oauth2"
    assert not stored.exists()
    env = {name: value for name, value in os.environ.items() if name != "DBUS_SESSION_BUS_ADDRESS"}
    process = subprocess.Popen(
        [str(binary("llmbasedos-mail")), "--accounts", str(world.accounts), "--secrets-dir", str(world.secrets_dir),
         "authorize", "device"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        pending: list[str] = []
        for _ in range(100):  # bounded: up to 10 s for the device request
            state = world.oauth.admin("state")
            pending = [code for code, status in state["devices"].items() if status == "pending"]
            if pending or process.poll() is not None:
                break
            time.sleep(0.1)
        assert len(pending) == 1, (state["devices"], process.poll())
        [user_code] = state["user_codes"][-1:]
        world.oauth.admin("approve")
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    printed = stdout + stderr
    assert user_code in printed, printed
    assert f"{world.oauth.url}/activate" in printed, printed
    assert "authorized" in printed, printed
    state = world.oauth.admin("state")
    assert state["devices"][pending[0]] == "used"
    token = stored.read_text().strip()
    assert token in state["refresh_tokens"], "the stored token is the one the provider issued"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert token not in printed and (state["access_token"] or "never-printed") not in printed
    # The running server finds the stored token at its first call.
    assert folders_of(world, "device")["INBOX"]["messages"] == 3
    last = [r["form"] for r in world.oauth.admin("state")["requests"] if r["form"].get("grant_type") == "refresh_token"][-1]
    assert last["refresh_token"] == token


def test_a_server_that_goes_down_is_used_again_once_it_is_back(world: World):
    flaky = world.flaky
    flaky.start()
    assert folders_of(world, "flaky")["INBOX"]["messages"] == 2
    # Down: its sessions end (dovecot's logged-in imap processes outlive
    # a stopped master) and the master is stopped by its pid, its files
    # and ports kept.
    flaky.kick("alice")
    flaky.halt()
    # At once (within imap::NOOP_AFTER, before any NOOP would be sent): the
    # pooled session's BYE and end of stream are seen without a round
    # trip, and the new connection is refused.
    text = refused(world, "mail_listFolders", {"account": "flaky"}, "account flaky", "cannot connect",
                   f"127.0.0.1:{flaky.imaps_port}")
    assert "refused" in text.lower(), text
    result = call(world, "mail_listMessages", {"account": "flaky", "folder": "INBOX", "limit": 5})
    assert result.is_error is True and "cannot connect" in " ".join(block.text for block in result.content)
    # The other accounts are served meanwhile.
    assert folders_of(world, "work")["INBOX"]["messages"] > 0
    flaky.start()  # the same server on the same port
    page = ok(world, "mail_listMessages", {"account": "flaky", "folder": "INBOX", "limit": 5})
    assert sorted(message["subject"] for message in page["messages"]) == ["Flaky 0", "Flaky 1"]
    assert folders_of(world, "flaky")["INBOX"]["messages"] == 2


def test_missing_folders_are_typed_from_the_servers_response_codes(world: World):
    """Debian's dovecot 2.3 answers EXAMINE of a missing folder with a
    `NO` without a code (a NO to SELECT/EXAMINE means no such mailbox,
    RFC 3501 6.3.1) and MOVE into one with `NO [TRYCREATE]`: both become
    folder_not_found naming the param that named the folder, decided on
    the status and code, never the words; the session stays usable."""
    def error_of(tool: str, arguments: dict) -> tuple[str, dict]:
        async def scenario():
            target = streamable_http_client(world.stack.url, http_client=create_mcp_http_client(headers=world.stack.auth))
            async with Client(target, mode="legacy") as client:
                return await client.call_tool(tool, arguments)

        result = asyncio.run(scenario())
        assert result.is_error is True, result.structured_content
        text = " ".join(getattr(block, "text", "") for block in result.content)
        ERRORS.append(text)
        return text, result

    text, _ = error_of("mail_listMessages", {"account": "work", "folder": "NoSuchFolder", "limit": 1})
    assert "no folder NoSuchFolder" in text and "given as folder" in text, text
    first = world.special["mutate_first"] + 4
    text, _ = error_of("mail_moveMessages", {"account": "work", "folder": "INBOX", "uids": [first], "to": "NoSuchTarget"})
    assert "no folder NoSuchTarget" in text and "given as to" in text, text
    # Nothing moved; the message is still there, and the server serves.
    remaining = inbox_page(world, limit=10, search={"subject": "Mutate 4"})["messages"]
    assert [message["uid"] for message in remaining] == [first]


def test_bad_input_and_faults_are_refused_clearly_and_the_server_keeps_serving(world: World):
    refused(world, "mail_listFolders", {"account": "wrongpw"}, "wrongpw", "refused the login", "add-secret")
    refused(world, "mail_listFolders", {"account": "nobody"}, "no account nobody", "work")
    refused(world, "mail_listFolders", {"account": "down"}, "down", "cannot connect", f"127.0.0.1:{world.closed_port}")
    refused(world, "mail_listFolders", {"account": "hung"}, "hung", "did not answer")
    refused(world, "mail_listFolders", {"account": "badcert"}, "badcert", "TLS", "ca_file")
    refused(world, "mail_listFolders", {"account": "leaky"}, "group or others", "chmod 600")
    big = ok(world, "mail_listMessages", {"account": "work", "folder": "Big", "limit": 1})["messages"][0]
    assert big["size"] > 50 * 1024 * 1024
    refused(world, "mail_getMessage", {"account": "work", "folder": "Big", "uid": big["uid"]}, "over the limit")
    refused(world, "mail_getMessage", {"account": "work", "folder": "Nope", "uid": 1}, "no folder Nope")
    refused(world, "mail_getMessage", {"account": "work", "uid": 999999}, "no message with uid 999999")
    refused(world, "mail_send", {"account": "work", "to": ["carol@example.org", "mallory@attacker.example"], "body": "x"},
            "mallory@attacker.example", "allowed_recipients")
    refused(world, "mail_send", {"account": "readonly", "to": "carol@example.org", "body": "x"}, "no send policy",
            "mail_accounts.yaml")
    assert not [message for message in world.smtp.messages() if "mallory" in json.dumps(message)]
    # The server that was down is used as soon as it is back: the same
    # account now pointing at a working port is beyond one run, but the
    # working accounts still work after all of the above.
    assert ok(world, "mail_listFolders", {"account": "work"})["folders"]


def test_malformed_mime_is_read_cleanly(world: World):
    listed = ok(world, "mail_listMessages", {"account": "work", "folder": "Broken", "limit": 10})["messages"]
    by_uid = {item["uid"]: item for item in listed}
    assert sorted(by_uid) == [1, 2, 3, 4, 5], listed
    read = {uid: ok(world, "mail_getMessage", {"account": "work", "folder": "Broken", "uid": uid}) for uid in by_uid}
    # A boundary that never appears: the text is still there, nothing lost.
    assert read[1]["subject"] == "Broken boundary"
    assert f"{BODY_MARK}-boundary part one" in read[1]["body"]["text"] + json.dumps(read[1]["attachments"]) or \
        read[1]["body"]["source"] in ("plain", "none")
    # An unknown charset: the text comes out (bytes it cannot map replaced).
    assert f"{BODY_MARK}-charset caf" in read[2]["body"]["text"]
    assert read[2]["message_id"] == "broken2@example.org"
    # Truncated base64: what decodes is given, the cut attachment listed.
    assert read[3]["subject"] == "Truncated base64"
    assert f"{BODY_MARK}-truncated hello" in read[3]["body"]["text"]
    assert [attachment["name"] for attachment in read[3]["attachments"]] == ["cut.bin"]
    # Raw 8-bit UTF-8 headers read as UTF-8.
    assert read[4]["subject"] == "Grüße aus Köln – ohne Kodierung"
    assert by_uid[4]["subject"] == "Grüße aus Köln – ohne Kodierung"
    assert "Mälory" in json.dumps(read[4]["from"], ensure_ascii=False)
    assert f"{BODY_MARK}-8bit Grüße" in read[4]["body"]["text"]
    # Invalid base64, cut (uid 3) or not (uid 5): listed as undecodable,
    # and getAttachment refuses it with a typed error instead of handing
    # the encoded text back as the file's bytes.
    assert [a["name"] for a in read[5]["attachments"]] == ["bad.pdf"]
    for uid in (3, 5):
        attachment = read[uid]["attachments"][0]
        assert attachment["undecodable"] is True, attachment
        result = call(world, "mail_getAttachment", {"account": "work", "folder": "Broken", "uid": uid,
                                                    "part": attachment["part_id"]})
        assert result.is_error is True, result.structured_content
        text = " ".join(getattr(block, "text", "") for block in result.content)
        assert "cannot be decoded" in text and "base64" in text and "mail_getMessage" in text, text
        assert "JVBERi0" not in text and "AAECAwQF" not in text, text
    assert f"{BODY_MARK}-bad base64 see attached" in read[5]["body"]["text"]
    # The server still serves.
    assert ok(world, "mail_listFolders", {"account": "work"})["folders"]


def test_sending_is_rate_limited(world: World):
    sent = 0
    for _ in range(10):  # bounded; the policy allows 5 a minute
        result = call(world, "mail_send", {"account": "work", "to": "carol@example.org", "subject": "rate",
                                            "body": f"{BODY_MARK}-rate"})
        if result.is_error:
            text = " ".join(getattr(block, "text", "") for block in result.content)
            assert "rate limit" in text, text
            break
        sent += 1
    assert sent <= 5 and sent >= 1


def test_no_secret_or_body_in_any_log_or_error(world: World):
    texts = world.logs()
    texts["errors"] = "\n".join(ERRORS)
    assert ERRORS, "the refusals above produced error texts"
    for name, text in texts.items():
        for secret in (PASSWORD, WRONG, REFRESH_1, REFRESH_2, REFRESH_3, "access-"):
            assert secret not in text, f"{name} contains a password"
        assert BODY_MARK not in text or name.endswith("smtp.log"), f"{name} contains a message body"
        assert "Friday works for me" not in text or name.endswith("smtp.log"), f"{name} contains a sent body"
    mail_log = texts[str(world.stack.root / "mail.log")]
    assert "mail sent" in mail_log and "recipients=1" in mail_log
