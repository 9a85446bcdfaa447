"""The exit statuses of every command, in one table (the README and `--help` show it)."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    # check errors (build, check, send refusing an issue), rows rejected by an import, or a
    # send that finished with failed or uncertain messages
    INCOMPLETE = 1
    # bad input, settings or command line; a refused login; a database that cannot be used:
    # one line on stderr, nothing done
    BAD_INPUT = 2
    # a send paused (failures in a row, no server reachable): run send again to resume
    PAUSED = 3
    # a send left only deferred messages (temporary refusals): run send again later, or let
    # `newsletter due` retry them
    DEFERRED = 4
    # `bounces read -` could not record the message (a busy or full database): an MTA that
    # piped it keeps it and tries again later (sysexits.h EX_TEMPFAIL)
    TEMPFAIL = 75
    INTERRUPTED = 130  # Ctrl-C
    # SIGTERM (`systemctl stop`, a shutdown): the messages in flight were finished and
    # recorded; a send is not held, so `newsletter due` resumes it
    TERMINATED = 143


EXIT_TABLE = """\
Exit status: 0 done; 1 check errors, rejected rows, or a send finished with failed or
uncertain messages; 2 bad input, settings or login (nothing done); 3 send paused (run it
again to resume); 4 only deferred messages left (run send again later, or newsletter due);
75 bounces read - could not record the message (an MTA retries later); 130 interrupted;
143 send or due stopped by SIGTERM (what was in flight finished; due resumes it)."""
