"""A private Postfix on 127.0.0.1 for tests: its own configuration and queue in a temporary
folder, no chroot, no DNS, relaying everything to a "provider" on loopback, and the bounce
domain's mail to Dovecot by LMTP: the production shape of the README, in miniature.

`master -d` runs as a direct child of the test (Postfix needs root for its master process;
CI runs as root), stopped and waited for before its folder goes away. Nothing it does can
leave the machine: its only relay and its only LMTP target are loopback ports.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .daemon import Daemon
from .smtp_server import free_port

MASTER = Path("/usr/lib/postfix/sbin/master")
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MASTER_CF = """\
{listen}  inet  n  -  n  -  -  smtpd
pickup    unix  n  -  n  60   1  pickup
cleanup   unix  n  -  n  -    0  cleanup
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -    -  trivial-rewrite
bounce    unix  -  -  n  -    0  bounce
defer     unix  -  -  n  -    0  bounce
trace     unix  -  -  n  -    0  bounce
verify    unix  -  -  n  -    1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -    -  proxymap
smtp      unix  -  -  n  -    -  smtp
relay     unix  -  -  n  -    -  smtp
showq     unix  n  -  n  -    -  showq
error     unix  -  -  n  -    -  error
retry     unix  -  -  n  -    -  error
discard   unix  -  -  n  -    -  discard
lmtp      unix  -  -  n  -    -  lmtp
anvil     unix  -  -  n  -    1  anvil
scache    unix  -  -  n  -    1  scache
postlog   unix-dgram n - n -  1  postlogd
"""


def available() -> bool:
    return MASTER.is_file() and os.geteuid() == 0


class Postfix(Daemon):
    LOGS = ("stderr.log", "maillog")
    STOP_WAIT = 15.0

    def __init__(self, relay_port: int, lmtp_port: int, bounce_domain: str):
        self.root = Path(tempfile.mkdtemp(prefix="nl-postfix-"))
        self.port = free_port()
        self.relay_port = relay_port
        self.lmtp_port = lmtp_port
        self.bounce_domain = bounce_domain
        self.process: subprocess.Popen | None = None

    def _main_cf(self) -> str:
        r = self.root
        return f"""\
compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {r}/maillog
maillog_file_prefixes = {r}
myhostname = relay.example.org
mydomain = example.org
myorigin = example.org
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{self.relay_port}
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
transport_maps = inline:{{{{ {self.bounce_domain}=lmtp:inet:127.0.0.1:{self.lmtp_port} }}}}
smtp_tls_security_level = none
smtpd_tls_security_level = none
"""

    def start(self) -> Postfix:
        self.root.chmod(0o755)  # Postfix's daemons run as `postfix` and must get in
        conf = self.root / "conf"
        conf.mkdir()
        (self.root / "data").mkdir()
        (self.root / "queue").mkdir()
        postfix = pwd.getpwnam("postfix")
        os.chown(self.root / "data", postfix.pw_uid, postfix.pw_gid)
        (conf / "main.cf").write_text(self._main_cf())
        (conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        env = {**os.environ, "MAIL_CONFIG": str(conf)}
        # `postfix check` makes the queue's folders with the owners and modes Postfix wants
        subprocess.run(
            [POSTFIX, "-c", str(conf), "check"], env=env, check=True, capture_output=True
        )
        self.process = subprocess.Popen(
            [str(MASTER), "-d", "-c", str(conf)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "wb"),  # noqa: SIM115 - the child owns it
        )
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postfix exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postfix did not start: {self.log()}")
