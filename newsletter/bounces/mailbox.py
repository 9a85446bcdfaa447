"""Read the bounce mailbox: IMAP (imaps://, or imap:// with STARTTLS) or POP3 (pop3s://, or
pop3:// with STLS), stdlib imaplib and poplib, certificates always verified.

At least once, never twice: each message is recorded (one commit) before it leaves the
inbox. IMAP then moves it to `Processed`, `Ignored` or `Unrecognised` (MOVE, or COPY and
expunge where the server lacks MOVE); POP3, which has no folders, deletes it, and the UIDL
is remembered so that a run killed before the deletion took effect only deletes it next
time. Either way, a message met again is found by its fingerprint and never counted twice.
"""

from __future__ import annotations

import imaplib
import ipaddress
import poplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..config import Mailbox
from ..errors import DeliveryError
from .book import Book, Recorded, fingerprint
from .parse import MAX_BYTES

FOLDERS = {"processed": "Processed", "ignored": "Ignored", "unrecognised": "Unrecognised"}
TIMEOUT = 60.0


class MailboxError(DeliveryError):
    """The mailbox cannot be read: one line naming it (never the password)."""


@dataclass(frozen=True)
class Item:
    uid: str  # IMAP UID, or POP3 UIDL
    size: int
    number: int = 0  # POP3 message number in this session


def _context(box: Mailbox) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=box.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise MailboxError(
            f"cannot read NEWSLETTER_BOUNCE_CA_FILE: {exc}", box.ca_file or None
        ) from None


def _network_error(box: Mailbox, exc: BaseException) -> MailboxError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return MailboxError(
            f"{box}: the server's certificate is not trusted ({reason}); check the host name, "
            "or give its CA in NEWSLETTER_BOUNCE_CA_FILE"
        )
    if isinstance(exc, ssl.SSLError):
        return MailboxError(
            f"{box}: TLS failed ({exc.reason or exc}); check the scheme (imaps:// or imap://) "
            "and the port in NEWSLETTER_BOUNCE_MAILBOX"
        )
    if isinstance(exc, socket.gaierror):
        return MailboxError(f"{box}: cannot find the host; check NEWSLETTER_BOUNCE_MAILBOX")
    if isinstance(exc, TimeoutError | socket.timeout):
        return MailboxError(f"{box}: the server did not answer in time; try again later")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return MailboxError(
        f"{box}: cannot connect ({reason.lower()}); check NEWSLETTER_BOUNCE_MAILBOX"
    )


def _said(data: object) -> str:
    """What the server said, for a message: the first line, decoded, no credentials."""
    if isinstance(data, list | tuple) and data:
        data = data[0]
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return " ".join(str(data).split())[:200]


class ImapBox:
    def __init__(self, box: Mailbox, timeout: float = TIMEOUT):
        self.box = box
        self.timeout = timeout
        self.conn: imaplib.IMAP4 | None = None
        self.can_move = False

    def __enter__(self) -> ImapBox:
        box = self.box
        context = _context(box)
        try:
            if box.scheme == "imaps":
                self.conn = imaplib.IMAP4_SSL(
                    box.host, box.port, ssl_context=context, timeout=self.timeout
                )
            else:
                self.conn = imaplib.IMAP4(box.host, box.port, timeout=self.timeout)
                if "STARTTLS" in self.conn.capabilities:
                    self.conn.starttls(ssl_context=context)
                elif not _loopback(box.host):
                    raise MailboxError(
                        f"{box}: the server does not offer STARTTLS; use imaps:// (port 993)"
                    )
        except (OSError, ssl.SSLError) as exc:
            raise _network_error(box, exc) from None
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"{box}: the server refused us: {_said(str(exc))}") from None
        try:
            self.conn.login(box.user, box.password)
        except imaplib.IMAP4.error:
            self.close()
            raise MailboxError(
                f"{box}: the server refused the login of user '{box.user}'; check "
                "NEWSLETTER_BOUNCE_MAILBOX and NEWSLETTER_BOUNCE_PASSWORD"
            ) from None
        except OSError as exc:
            self.close()
            raise _network_error(box, exc) from None
        self.can_move = "MOVE" in self._capabilities()
        typ, data = self.conn.select(_quote(box.folder))
        if typ != "OK":
            self.close()
            raise MailboxError(f"{box}: cannot open folder '{box.folder}': {_said(data)}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _capabilities(self) -> set[str]:
        assert self.conn is not None
        typ, data = self.conn.capability()
        words = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace")
        return set(words.upper().split()) if typ == "OK" else set()

    def _command(self, *args: str) -> list:
        assert self.conn is not None
        try:
            typ, data = self.conn.uid(*args)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"{self.box}: {args[0]} failed: {_said(str(exc))}") from None
        if typ != "OK":
            raise MailboxError(f"{self.box}: {args[0]} failed: {_said(data)}")
        return data

    def items(self) -> list[Item]:
        data = self._command("SEARCH", "ALL")
        uids = (data[0] or b"").split() if data else []
        if not uids:
            return []
        sizes: dict[str, int] = {}
        for line in self._command("FETCH", b",".join(uids).decode(), "(RFC822.SIZE)"):
            text = line.decode("ascii", "replace") if isinstance(line, bytes) else ""
            uid, size = re.search(r"UID (\d+)", text), re.search(r"RFC822\.SIZE (\d+)", text)
            if uid and size:
                sizes[uid.group(1)] = int(size.group(1))
        return [Item(u.decode(), sizes.get(u.decode(), 0)) for u in uids]

    def fetch(self, item: Item) -> bytes:
        for part in self._command("FETCH", item.uid, "(BODY.PEEK[])"):
            if isinstance(part, tuple) and len(part) == 2:
                return part[1]
        raise MailboxError(f"{self.box}: UID {item.uid}: the server sent no message")

    def done(self, item: Item, outcome: str) -> None:
        folder = _quote(FOLDERS[outcome])
        if self.can_move:
            self._command("MOVE", item.uid, folder)
            return
        self._command("COPY", item.uid, folder)
        self._command("STORE", item.uid, "+FLAGS.SILENT", r"(\Deleted)")
        assert self.conn is not None
        self.conn.expunge()

    def ensure_folders(self) -> None:
        assert self.conn is not None
        for folder in FOLDERS.values():
            self.conn.create(_quote(folder))  # NO when it exists: fine

    def name(self, item: Item) -> str:
        return f"{self.box} UID {item.uid}"

    def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                if conn.state == "SELECTED":
                    conn.close()
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                conn.shutdown()


class Pop3Box:
    def __init__(self, box: Mailbox, timeout: float = TIMEOUT):
        self.box = box
        self.timeout = timeout
        self.conn: poplib.POP3 | None = None

    def __enter__(self) -> Pop3Box:
        box = self.box
        context = _context(box)
        try:
            if box.scheme == "pop3s":
                self.conn = poplib.POP3_SSL(
                    box.host, box.port, timeout=self.timeout, context=context
                )
            else:
                self.conn = poplib.POP3(box.host, box.port, timeout=self.timeout)
                if "STLS" in _capa(self.conn):
                    self.conn.stls(context=context)
                elif not _loopback(box.host):
                    raise MailboxError(
                        f"{box}: the server does not offer STLS; use pop3s:// (port 995)"
                    )
        except (OSError, ssl.SSLError) as exc:
            raise _network_error(box, exc) from None
        except poplib.error_proto as exc:
            raise MailboxError(f"{box}: the server refused us: {_said(exc.args)}") from None
        try:
            self.conn.user(box.user)
            self.conn.pass_(box.password)
        except poplib.error_proto:
            self.close(commit=False)
            raise MailboxError(
                f"{box}: the server refused the login of user '{box.user}'; check "
                "NEWSLETTER_BOUNCE_MAILBOX and NEWSLETTER_BOUNCE_PASSWORD"
            ) from None
        except OSError as exc:
            self.close(commit=False)
            raise _network_error(box, exc) from None
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        # QUIT makes the deletions take effect: only after a run that went well
        self.close(commit=exc_type is None)

    def items(self) -> list[Item]:
        assert self.conn is not None
        try:
            _, uidls, _ = self.conn.uidl()
            _, sizes, _ = self.conn.list()
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"{self.box}: cannot list the messages: {exc}") from None
        size_of = {}
        for line in sizes:
            number, _, size = line.decode("ascii", "replace").partition(" ")
            size_of[int(number)] = int(size or 0)
        out = []
        for line in uidls:
            number, _, uidl = line.decode("ascii", "replace").partition(" ")
            out.append(Item(uidl.strip(), size_of.get(int(number), 0), int(number)))
        return out

    def fetch(self, item: Item) -> bytes:
        assert self.conn is not None
        try:
            _, lines, _ = self.conn.retr(item.number)
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"{self.name(item)}: cannot read it: {exc}") from None
        return b"\r\n".join(lines) + b"\r\n"

    def done(self, item: Item, outcome: str) -> None:
        assert self.conn is not None
        try:
            self.conn.dele(item.number)
        except (poplib.error_proto, OSError) as exc:
            raise MailboxError(f"{self.name(item)}: cannot delete it: {exc}") from None

    def ensure_folders(self) -> None:
        pass

    def name(self, item: Item) -> str:
        return f"{self.box} UIDL {item.uid}"

    def close(self, commit: bool = True) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                if commit:
                    conn.quit()
                else:
                    conn.close()
            except (poplib.error_proto, OSError):
                conn.close()


def open_box(box: Mailbox, timeout: float = TIMEOUT) -> ImapBox | Pop3Box:
    return ImapBox(box, timeout) if box.imap else Pop3Box(box, timeout)


def fetch(
    book: Book,
    box: Mailbox,
    *,
    dry_run: bool = False,
    on_record: Callable[[Recorded], None] = lambda r: None,
    timeout: float = TIMEOUT,
) -> list[Recorded]:
    """Read every message in the mailbox: record it, then move (or delete) it."""
    out: list[Recorded] = []
    with open_box(box, timeout) as reader:
        if not dry_run:
            reader.ensure_folders()
        for item, recorded in _read_all(book, box, reader, dry_run):
            if not dry_run:
                reader.done(item, recorded.outcome)  # only after the commit
                if isinstance(reader, Pop3Box):
                    _remember(book, str(box), item.uid, recorded.fingerprint)
            out.append(recorded)
            on_record(recorded)
    return out


def _read_all(
    book: Book, box: Mailbox, reader: ImapBox | Pop3Box, dry_run: bool
) -> Iterator[tuple[Item, Recorded]]:
    for item in reader.items():
        name = reader.name(item)
        if isinstance(reader, Pop3Box):
            known = _known(book, str(box), item.uid)
            earlier = book.seen(known) if known else None
            if earlier is not None:
                yield item, earlier  # recorded, but the deletion did not take effect
                continue
        if item.size > MAX_BYTES:
            yield (
                item,
                book.skip(
                    f"too-large:{box}:{item.uid}:{item.size}",
                    name,
                    f"{item.size / 1e6:.1f} MB, larger than a bounce can be "
                    f"({MAX_BYTES // 2**20} MB); not read",
                    dry_run=dry_run,
                ),
            )
            continue
        raw = reader.fetch(item)
        known = book.seen(fingerprint(raw))
        yield item, known or book.read(raw, name, dry_run=dry_run)


def _known(book: Book, mailbox: str, uid: str) -> str | None:
    row = book.conn.execute(
        "SELECT fingerprint FROM mailbox_uids WHERE mailbox = ? AND uid = ?", (mailbox, uid)
    ).fetchone()
    return row[0] if row else None


def _remember(book: Book, mailbox: str, uid: str, fp: str) -> None:
    book.conn.execute(
        "INSERT INTO mailbox_uids (mailbox, uid, fingerprint) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (mailbox, uid, fp),
    )


def _loopback(host: str) -> bool:
    """A mailbox on this machine (a local Dovecot): the password never crosses a network, so
    imap:// and pop3:// may go without TLS there, and only there."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _capa(conn: poplib.POP3) -> dict:
    try:
        return conn.capa()
    except poplib.error_proto:  # a server without CAPA (RFC 2449) has no STLS either
        return {}


def _quote(folder: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", folder):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
