"""Real mail servers for the mail tests, each started in a temp dir on
127.0.0.1 and stopped by its pid: Debian's dovecot (`dovecot -c CONF -F`,
passwd-file auth, maildirs this module writes), an SMTP server
(`python3-aiosmtpd` with STARTTLS and AUTH, recording what it receives),
and a Secret Service (a private dbus-daemon with
`gnome-keyring-daemon --unlock --components=secrets`). Certificates are
made with openssl: a self-signed one with basicConstraints=critical,CA:FALSE
(rustls refuses a CA certificate as a server's), trusted through the
account's ca_file.

A missing component fails with the command that installs it
(./scripts/install-test-deps); nothing is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import sys
import subprocess
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL = "run ./scripts/install-test-deps (apt: dovecot-imapd python3-aiosmtpd gnome-keyring dbus openssl)"
SYSTEM_PYTHON = "/usr/bin/python3"


def fail(message: str):
    """pytest's failure in a test, an exit elsewhere (the packaging test
    runs this module as a script)."""
    try:
        import pytest
    except ImportError:
        raise SystemExit(message) from None
    pytest.fail(message)


def require(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        fail(f"{name} is missing: {INSTALL}")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, what: str, process: subprocess.Popen | None = None, log: Path | None = None, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log else ""
            raise AssertionError(f"{what} exited with {process.returncode}: {text}")
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} on port {port}")


def stop(process: subprocess.Popen | None, timeout: float = 10.0):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed leaf for 127.0.0.1/localhost (CA:FALSE)."""
    openssl = require("openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "extendedKeyUsage=serverAuth"],
        check=True, capture_output=True,
    )
    return cert, key


class Dovecot:
    """dovecot on loopback: `imaps` (TLS) and `imap` (STARTTLS required
    before login) listeners, users from a passwd-file, maildirs under
    `home/<user>/Maildir`."""

    def __init__(self, directory: Path, users: dict[str, str], cert: Path, key: Path, token_users: list[str] = ()):
        # dovecot's auth and mail processes run as other users (dovecot,
        # nobody) when the tests run as root: their files live in a
        # directory they can reach, not beneath pytest's private one.
        self.private = os.geteuid() == 0
        if self.private:
            self.dir = Path(tempfile.mkdtemp(prefix="llmbasedos-dovecot-"))
            self.dir.chmod(0o755)
            shutil.copy(cert, self.dir / "cert.pem")
            shutil.copy(key, self.dir / "key.pem")
            cert, key = self.dir / "cert.pem", self.dir / "key.pem"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "where").write_text(str(self.dir))
            self.keep = directory
        else:
            self.dir = directory
            self.dir.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.deliveries = itertools.count()
        self.imaps_port = free_port()
        self.imap_port = free_port()
        self.log = self.dir / "dovecot.log"
        self.process: subprocess.Popen | None = None
        self.owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        (self.dir / "passwd").write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in users.items()))
        # Users who log in with an OAuth2 access token (XOAUTH2,
        # OAUTHBEARER): the token is their passdb password, in a file the
        # test's OAuth2 provider rewrites whenever it issues one.
        self.token_users = list(token_users)
        self.token_passwd = self.dir / "passwd-oauth"
        self.token_passwd.write_text("".join(f"{user}:{{PLAIN}}no-token-yet::::::\n" for user in self.token_users))
        internal = "dovecot" if os.geteuid() == 0 else self.owner.pw_name
        login = "dovenull" if os.geteuid() == 0 else self.owner.pw_name
        # As root, auth reads the token file the provider writes (0600, root's).
        auth_as_root = "service auth {\n  user = root\n}\nservice auth-worker {\n  user = root\n}\n" if os.geteuid() == 0 else ""
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log}
instance_name = llmbasedos-test-{self.imaps_port}
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
auth_failure_delay = 0
# No auth penalty (a growing delay after failed logins from one address):
# the tests refuse tokens on purpose and log in again at once.
login_trusted_networks = 127.0.0.0/8
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/passwd
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.token_passwd}
}}
{auth_as_root}
userdb {{
  driver = static
  args = uid={self.owner.pw_uid} gid={self.owner.pw_gid} home={self.dir}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
# No auth penalty at all: login_trusted_networks alone still delayed the
# next AUTHENTICATE from 127.0.0.1 after a refused token past the tests'
# 4 s login timeout ("client didn't finish SASL auth").
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        base = self.dir / "home" / user / "Maildir"
        path = base if folder == "INBOX" else base / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def deliver(self, user: str, messages: list[tuple[bytes, str]], folder: str = "INBOX"):
        """Writes (message bytes, maildir flags like 'S' or 'FS') in order,
        so uids follow the list's order."""
        path = self.maildir(user, folder)
        base = int(time.time()) - len(messages)
        for index, (data, flags) in enumerate(messages):
            # Unique across calls too (a later delivery adds, never replaces).
            name = f"{base + index}.M{index}P{os.getpid()}Q{next(self.deliveries)}.llmbasedos"
            (path / "cur" / f"{name}:2,{flags}").write_bytes(data)
            stamp = base + index
            os.utime(path / "cur" / f"{name}:2,{flags}", (stamp, stamp))

    def flags_on_disk(self, user: str, folder: str = "INBOX") -> dict[str, str]:
        """Maildir file name → flags, as dovecot keeps them."""
        path = self.maildir(user, folder)
        found = {}
        for sub in ("cur", "new"):
            for entry in (path / sub).iterdir():
                name, _, flags = entry.name.partition(":2,")
                found[name] = flags
        return found

    def start(self):
        dovecot = require("dovecot")
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        for user in [*self.users, *self.token_users]:
            self.maildir(user)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{self.owner.pw_uid}:{self.owner.pw_gid}", str(home)], check=True)
        self.process = subprocess.Popen(
            [dovecot, "-c", str(self.config), "-F"], stdout=open(self.dir / "dovecot.out", "ab"), stderr=subprocess.STDOUT
        )
        wait_port(self.imaps_port, "dovecot (imaps)", self.process, self.dir / "dovecot.out")
        wait_port(self.imap_port, "dovecot (imap)", self.process, self.dir / "dovecot.out")
        return self

    def halt(self):
        """Stops dovecot and keeps its files: `start()` brings the same
        server back on the same ports (a server that goes down and returns)."""
        stop(self.process)
        self.process = None

    def kick(self, user: str):
        """Ends the user's IMAP sessions (doveadm kick)."""
        subprocess.run([require("doveadm"), "-c", str(self.config), "kick", user], check=True, capture_output=True)

    def stop(self):
        stop(self.process)
        if self.private:
            if self.log.exists():
                shutil.copy(self.log, self.keep / "dovecot.log")
            shutil.rmtree(self.dir, ignore_errors=True)


class SmtpRecorder:
    """aiosmtpd with STARTTLS required and AUTH PLAIN/LOGIN against one
    user, and XOAUTH2 against the tokens in `token_file` (the passwd-file
    the OAuth2 provider rewrites); every message lands in
    `received/N.json` (envelope + data), every XOAUTH2 attempt in
    `received/auth.jsonl`."""

    def __init__(self, directory: Path, user: str, password: str, cert: Path, key: Path,
                 token_file: Path | None = None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.received = self.dir / "received"
        self.received.mkdir(exist_ok=True)
        self.port = free_port()
        self.user, self.password, self.cert, self.key = user, password, cert, key
        self.token_file = token_file
        self.process: subprocess.Popen | None = None

    def start(self):
        if not Path(SYSTEM_PYTHON).exists():
            fail(f"{SYSTEM_PYTHON} is missing: {INSTALL}")
        check = subprocess.run([SYSTEM_PYTHON, "-c", "import aiosmtpd"], capture_output=True)
        if check.returncode != 0:
            fail(f"aiosmtpd is missing for {SYSTEM_PYTHON}: {INSTALL}")
        log = self.dir / "smtp.log"
        env = {"PATH": os.environ.get("PATH", ""), "SMTP_PASSWORD": self.password}
        if self.token_file is not None:
            env["SMTP_TOKEN_FILE"] = str(self.token_file)
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "smtp_recorder.py"), str(self.port), self.user, str(self.cert), str(self.key),
             str(self.received)],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,
        )
        wait_port(self.port, "the SMTP recorder", self.process, log)
        return self

    def messages(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.received.glob("*.json"))]

    def refuse_like(self, provider: str):
        """How a refused XOAUTH2 token is told from now on: `google` (a 334
        error challenge, then 535) or `microsoft` (535 at once)."""
        (self.received / "refuse-like").write_text(provider)

    def oauth_attempts(self) -> list[dict]:
        """Every AUTH XOAUTH2: {"mechanism", "user", "success"}, and
        "challenge_reply" after a Google-style error challenge."""
        log = self.received / "auth.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def stop(self):
        stop(self.process)


class SecretService:
    """A private session bus with gnome-keyring's Secret Service, unlocked."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.address = f"unix:path={self.dir}/bus"
        self.bus: subprocess.Popen | None = None
        self.keyring: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    def start(self):
        dbus = require("dbus-daemon")
        keyring = require("gnome-keyring-daemon")
        self.bus = subprocess.Popen(
            [dbus, "--session", "--nofork", f"--address={self.address}", "--nopidfile"],
            stdout=open(self.dir / "dbus.log", "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not (self.dir / "bus").exists():
            if time.monotonic() > deadline or self.bus.poll() is not None:
                raise AssertionError("the private dbus-daemon did not start: " + (self.dir / "dbus.log").read_text())
            time.sleep(0.05)
        home = self.dir / "home"
        (home / ".local/share").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_RUNTIME_DIR": str(self.dir),
            **self.env,
        }
        self.keyring = subprocess.Popen(
            [keyring, "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=open(self.dir / "keyring.log", "ab"), stderr=subprocess.STDOUT, env=env,
        )
        self.keyring.stdin.write(b"keyring-test-unlock\n")
        self.keyring.stdin.close()
        # Ready when the bus has the Secret Service's name.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            names = subprocess.run(
                ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                 "org.freedesktop.DBus.ListNames"],
                capture_output=True, text=True, env={**os.environ, **self.env},
            ).stdout
            if "org.freedesktop.secrets" in names:
                return self
            if self.keyring.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("gnome-keyring-daemon did not serve org.freedesktop.secrets: "
                             + (self.dir / "keyring.log").read_text(errors="replace"))

    def stop(self):
        stop(self.keyring)
        stop(self.bus)


class SilentServer:
    """Accepts connections and never says a word (a hung server)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
                self.held.append(connection)
            except OSError:
                continue

    def stop(self):
        self.stopped.set()
        self.thread.join(2)
        for connection in self.held:
            connection.close()
        self.listener.close()


def serve_dovecot(directory: Path, user: str, password: str):
    """For tests/packaging/run: dovecot with `user` and three messages in
    its INBOX; prints one JSON line (imaps_port, cert) and serves until
    SIGTERM."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(directory)
    dovecot = Dovecot(directory / "dovecot", {user: password}, cert, key)
    dovecot.deliver(user, [
        (f"From: a@example.org\r\nTo: {user}@example.org\r\nSubject: packaged {n}\r\n"
         f"Message-ID: <p{n}@example.org>\r\n\r\nhello {n}\r\n".encode(), "")
        for n in range(3)
    ])
    dovecot.start()
    print(json.dumps({"imaps_port": dovecot.imaps_port, "cert": str(cert)}), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    finally:
        dovecot.stop()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 5 or sys.argv[1] != "dovecot":
        raise SystemExit("usage: mail_servers.py dovecot DIR USER PASSWORD")
    serve_dovecot(Path(sys.argv[2]), sys.argv[3], sys.argv[4])


class OAuthProvider:
    """tests/e2e/servers/oauth_server.py: the refresh-token (RFC 6749 §6)
    and device (RFC 8628) grants, writing the current access token into
    dovecot's token passwd-file."""

    def __init__(self, directory: Path, client_id: str, refresh_tokens: list[str], passwd_file: Path, user: str):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.argv = [sys.executable, str(HERE / "oauth_server.py"), "--client-id", client_id,
                     "--passwd-file", str(passwd_file), "--passwd-template", f"{user}:{{PLAIN}}@TOKEN@::::::"]
        for token in refresh_tokens:
            self.argv += ["--refresh-token", token]
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self):
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=open(self.dir / "oauth.log", "ab"))
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError("the OAuth2 provider did not start: " + (self.dir / "oauth.log").read_text())
        self.port = json.loads(line)["port"]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, path: str, body: dict | None = None) -> dict:
        import urllib.request

        data = None if body is None and path == "state" else json.dumps(body or {}).encode()
        request = urllib.request.Request(f"{self.url}/admin/{path}", data=data, method="GET" if data is None else "POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def stop(self):
        stop(self.process)
