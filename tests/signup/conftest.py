"""Fixtures of the signup tests: a real SMTP server, settings pointing at it, the store, the
app under uvicorn, and a controlled clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine

from newsletter.config import Settings
from newsletter.subscribers import SqliteStore

from ..smtp_server import Handler
from ..smtp_server import Server as SmtpServer
from ..test_web import Server
from .helpers import START, signup_settings


@pytest.fixture
def mail_server() -> Iterator[SmtpServer]:
    with SmtpServer(Handler()) as server:
        yield server


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """Time moves on as usual from START; tests jump ahead with clock.shift(seconds)."""
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller


@pytest.fixture
def settings(tmp_path: Path, mail_server: SmtpServer) -> Settings:
    return signup_settings(tmp_path, mail_server.port)


@pytest.fixture
def store(settings: Settings) -> Iterator[SqliteStore]:
    with SqliteStore(settings.db_path) as store:
        yield store


@pytest.fixture
def app(settings: Settings, clock) -> Iterator[Server]:
    with Server(settings) as server:
        yield server
