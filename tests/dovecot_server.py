"""A real Dovecot (IMAP, POP3, LMTP) on loopback for tests, started without privileges.

Everything lives in one temporary folder: the configuration, the runtime and state folders,
the log, a passwd-file and the maildirs. Run as root (CI is), the server drops to `nobody`
before it starts, so that it never needs or touches anything of the system's; it is a
direct child, stopped and waited for before its folder goes away.
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .daemon import Daemon
from .smtp_server import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> bool:
    return Path(DOVECOT).is_file() and Path("/usr/lib/dovecot/lmtp").exists()


@dataclass(frozen=True)
class Ports:
    imap: int
    pop3: int
    lmtp: int
    imaps: int
    pop3s: int


class Dovecot(Daemon):
    """`users` maps a login to its password; `tls` is (certificate PEM, key PEM) or None."""

    LOGS = ("stderr.log", "dovecot.log")

    def __init__(self, users: dict[str, str], tls: tuple[bytes, bytes] | None = None):
        self.users = users
        self.tls = tls
        self.root = Path(tempfile.mkdtemp(prefix="nl-dovecot-"))
        self.ports = Ports(*(free_port() for _ in range(5)))
        self.process: subprocess.Popen | None = None
        self.runas = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())

    # --- configuration ---------------------------------------------------------------------

    def _config(self) -> str:
        r, p = self.root, self.ports
        user, group = self.runas.pw_name, _group_name(self.runas.pw_gid)
        ssl = "no"
        tls_lines = ""
        if self.tls is not None:
            ssl = "yes"
            tls_lines = f"ssl_cert = <{r}/cert.pem\nssl_key = <{r}/key.pem\n"
        imaps = f"inet_listener imaps {{\n address = 127.0.0.1\n port = {p.imaps}\n ssl = yes\n}}"
        pop3s = f"inet_listener pop3s {{\n address = 127.0.0.1\n port = {p.pop3s}\n ssl = yes\n}}"
        if self.tls is None:
            imaps = pop3s = ""
        return f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3 lmtp
ssl = {ssl}
{tls_lines}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/passwd
  default_fields = uid={self.runas.pw_uid} gid={self.runas.pw_gid} home={r}/home/%u
}}
mail_location = maildir:{r}/mail/%u
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
pop3_uidl_format = %08Xu%08Xv
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {p.imap}
  }}
  {imaps}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p.pop3}
  }}
  {pop3s}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {p.lmtp}
  }}
}}
service anvil {{
  chroot =
}}
service imap-urlauth-login {{
  chroot =
}}
"""

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Dovecot:
        for name in ("run", "state", "mail", "home"):
            (self.root / name).mkdir()
        (self.root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items())
        )
        if self.tls is not None:
            (self.root / "cert.pem").write_bytes(self.tls[0])
            (self.root / "key.pem").write_bytes(self.tls[1])
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config())
        uid, gid = self.runas.pw_uid, self.runas.pw_gid
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, uid, gid)

        def drop() -> None:  # pragma: no cover - runs in the child
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            preexec_fn=drop,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "wb"),  # noqa: SIM115 - the child owns it
        )
        deadline = time.monotonic() + 15
        wanted = [self.ports.imap, self.ports.pop3, self.ports.lmtp]
        if self.tls is not None:
            wanted += [self.ports.imaps, self.ports.pop3s]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            if all(_listening(port) for port in wanted):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    # --- helpers ---------------------------------------------------------------------------

    def deliver(self, rcpt: str, data: bytes, mail_from: str = "") -> None:
        """Deliver one message by LMTP, as an MTA would."""
        with smtplib.LMTP("127.0.0.1", self.ports.lmtp, timeout=10) as lmtp:
            lmtp.sendmail(mail_from, [rcpt], data)

    def maildir(self, user: str, folder: str = "") -> list[Path]:
        """The messages in one folder of a user's maildir ('' is the inbox)."""
        base = self.root / "mail" / user
        if folder:
            base = base / f".{folder}"
        return sorted(p for sub in ("cur", "new") for p in (base / sub).glob("*") if p.is_file())


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name
