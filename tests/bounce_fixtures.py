"""Bounce, complaint and reply messages as real servers write them, for one of our messages.

Each builder takes what it reports on (the envelope sender our message went out with, its
recipient, its Message-ID and its List-Unsubscribe) and returns the raw bytes a mailbox
would hold. Shapes follow Postfix's DSNs, RFC 6533's global DSN, and the ARF reports of
large providers (the complainant redacted).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    """What a report can know of the message it is about."""

    verp: str  # the envelope sender: bounces+TOKEN@bounce.example.org
    rcpt: str
    message_id: str
    list_unsubscribe: str
    subject: str = "News / Brèves No. 1"

    @property
    def envid(self) -> str:
        return self.verp.partition("+")[2].partition("@")[0]


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _headers(sent: Sent) -> str:
    return (
        f"Return-Path: <{sent.verp}>\n"
        "From: Committee News <news@example.org>\n"
        f"To: <{sent.rcpt}>\n"
        "Subject: News / Breves No. 1\n"
        f"Message-ID: {sent.message_id}\n"
        f"List-Unsubscribe: {sent.list_unsubscribe}\n"
    )


def dsn(
    sent: Sent,
    status: str,
    diagnostic: str,
    *,
    action: str = "failed",
    to: str | None = None,
    envid: bool = True,
    global_: bool = False,
    returned: str | None = None,
    message_id: str = "<dsn.1@mail.example.net>",
) -> bytes:
    """A Postfix-style DSN: multipart/report with text, delivery-status and the headers."""
    to = sent.verp if to is None else to
    kind = "global-delivery-status" if global_ else "delivery-status"
    envid_line = f"Original-Envelope-Id: {sent.envid}\n" if envid else ""
    rcpt = f"utf-8; {sent.rcpt}" if global_ else f"rfc822; {sent.rcpt}"
    headers = _headers(sent) if returned is None else returned
    return _crlf(
        f"""Return-Path: <>
Delivered-To: {to}
From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type={kind}; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.net.
I'm sorry to have to inform you that your message could not be delivered.

--B1
Content-Type: message/{kind}{"; charset=utf-8" if global_ else ""}

Reporting-MTA: dns; relay.example.net
X-Postfix-Queue-ID: 3F2A1C0042
{envid_line}Arrival-Date: Mon, 13 Nov 2017 08:00:00 -0500

Final-Recipient: {rcpt}
Original-Recipient: rfc822;{sent.rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {diagnostic}

--B1
Content-Type: {"message/global-headers" if global_ else "text/rfc822-headers"}

{headers}
--B1--
"""
    )


def arf(
    sent: Sent,
    feedback_type: str = "abuse",
    *,
    to: str = "fbl@bounce.example.org",
    redacted: bool = True,
    message_id: str = "<arf.1@fbl.example.net>",
) -> bytes:
    """An ARF report (RFC 5965) with our message attached, its recipient redacted."""
    rcpt = "redacted@example.net" if redacted else sent.rcpt
    return _crlf(
        f"""Delivered-To: {to}
From: Feedback Loop <fbl@example.net>
To: {to}
Subject: complaint about message from 192.0.2.25
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F1"

--F1
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.25.

--F1
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{sent.verp if not redacted else "redacted@example.org"}>
Original-Rcpt-To: <{rcpt}>
Source-IP: 192.0.2.25
Arrival-Date: Mon, 13 Nov 2017 08:00:01 -0500

--F1
Content-Type: message/rfc822

From: Committee News <news@example.org>
To: <{rcpt}>
Subject: News / Breves No. 1
Message-ID: {sent.message_id}
List-Unsubscribe: {sent.list_unsubscribe if not redacted else "<https://news.example.org/unsubscribe/redacted>"}
MIME-Version: 1.0
Content-Type: text/plain

The newsletter text.

--F1--
"""
    )


def auto_reply(to: str, message_id: str = "<ooo.1@example.net>") -> bytes:
    return _crlf(
        f"""Delivered-To: {to}
From: Anne Smith <anne@example.org>
To: {to}
Subject: Automatic reply: News / Breves No. 1
Auto-Submitted: auto-replied
Message-ID: {message_id}

I am out of the office until Monday.
"""
    )


def unsubscribe_mail(to: str, sender: str, message_id: str = "<unsub.1@example.net>") -> bytes:
    return _crlf(
        f"""Delivered-To: {to}
From: <{sender}>
To: <{to}>
Subject: unsubscribe
Message-ID: {message_id}

please take me off
"""
    )


def junk(message_id: str = "<junk.1@example.net>") -> bytes:
    return _crlf(
        f"""From: Someone <someone@example.com>
To: bounces@bounce.example.org
Subject: Great offer
Message-ID: {message_id}

Buy now.
"""
    )
