"""The store's schema as an ordered list of migrations: MIGRATIONS[i] brings a file to version i+1.

Append only. A released migration is never edited: a file already at its version would not
run the edit. Each script runs in its own transaction (see `db.migrate`).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: subscribers and their audit trail.
    # AUTOINCREMENT so that an id, which signed links carry, is never given to someone else
    # after a removal. email_key is what uniqueness is about: the local part is case-sensitive
    # by the RFCs, the domain is not.
    """
    CREATE TABLE subscribers (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL UNIQUE,
        name          TEXT NOT NULL DEFAULT '',
        language      TEXT NOT NULL CHECK (language IN ('en', 'fr', 'both')),
        status        TEXT NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained')),
        joined_at     TEXT NOT NULL,
        join_source   TEXT NOT NULL,
        consent_note  TEXT NOT NULL DEFAULT '',
        left_at       TEXT,
        left_how      TEXT,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX subscribers_status_language ON subscribers (status, language);

    -- CASL: the sender must prove consent and every unsubscribe. Rows outlive the
    -- subscriber (no foreign key), so a removal keeps its history, and an address that
    -- unsubscribed and was then removed is still not re-added by an import. email holds the
    -- email_key for that lookup.
    CREATE TABLE subscriber_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        subscriber_id INTEGER NOT NULL,
        email         TEXT NOT NULL,
        at            TEXT NOT NULL,
        kind          TEXT NOT NULL
                      CHECK (kind IN ('join', 'update', 'language', 'name', 'unsubscribe',
                                      'resubscribe', 'status', 'remove')),
        route         TEXT NOT NULL,
        detail        TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX subscriber_events_subscriber ON subscriber_events (subscriber_id);
    CREATE INDEX subscriber_events_email ON subscriber_events (email);
    """,
]

MIGRATIONS.append(
    # 2: the delivery ledger. One row per (issue, subscriber), written when a send starts,
    # so the recipient list is fixed then. `state` moves pending -> sending -> sent | failed,
    # or back to pending with a later next_attempt for a temporary failure; a row found in
    # `sending` when a send starts was in flight when the last one died: it becomes
    # `uncertain` and is resent only on request. The message id is chosen once, so a resent
    # message carries the same id as the first (receivers can tell it is the same message).
    """
    CREATE TABLE sends (
        issue_id      TEXT PRIMARY KEY,
        started_at    TEXT NOT NULL,
        finished_at   TEXT
    );
    CREATE TABLE deliveries (
        issue_id      TEXT NOT NULL REFERENCES sends (issue_id),
        subscriber_id INTEGER NOT NULL,
        email         TEXT NOT NULL,
        name          TEXT NOT NULL DEFAULT '',
        edition       TEXT NOT NULL CHECK (edition IN ('en', 'fr', 'bilingual')),
        state         TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'uncertain',
                                       'skipped')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_reply    TEXT NOT NULL DEFAULT '',
        updated_at    TEXT,
        next_attempt  REAL NOT NULL DEFAULT 0,
        message_id    TEXT NOT NULL,
        PRIMARY KEY (issue_id, subscriber_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_state ON deliveries (issue_id, state, next_attempt);
    """
)

MIGRATIONS.append(
    # 3: addresses with a non-ASCII domain, stored as typed by 0.1.0, take their ASCII (IDNA)
    # form, the one lookups now use: otherwise someone who left under `ann@exämple.org` would
    # not be recognised, and an import would add them again. The functions are registered by
    # db.connect (SQL has no IDNA). A non-ASCII local part stays as it is: it never matched.
    """
    UPDATE subscribers SET email = nl_ascii_email(email), email_key = nl_email_key(email)
        WHERE email GLOB '*[^ -~]*';
    UPDATE subscriber_events SET email = nl_email_key(email) WHERE email GLOB '*[^ -~]*';
    UPDATE deliveries SET email = nl_ascii_email(email) WHERE email GLOB '*[^ -~]*';
    """
)

MIGRATIONS.append(
    # 4: a real retry queue and sends that remember themselves.
    # - `deferred`: a temporary refusal waiting for `next_attempt`; `first_attempt` starts the
    #   clock after which it expires (NEWSLETTER_RETRY_FOR). Old retries (pending with
    #   attempts) become deferred. SQLite cannot change a CHECK, so the table is rebuilt.
    # - `sends` keeps the issue folder, the options given (rate, cap, concurrency: reused on
    #   resume), a state (`held` after Ctrl-C: only `send` resumes it, not `due`), and the
    #   frozen editions, so a resume or a retry days later sends what was checked.
    # - `schedules`: sends waiting for their time.
    """
    CREATE TABLE deliveries_v4 (
        issue_id      TEXT NOT NULL REFERENCES sends (issue_id),
        subscriber_id INTEGER NOT NULL,
        email         TEXT NOT NULL,
        name          TEXT NOT NULL DEFAULT '',
        edition       TEXT NOT NULL CHECK (edition IN ('en', 'fr', 'bilingual')),
        state         TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed',
                                       'uncertain', 'skipped')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_reply    TEXT NOT NULL DEFAULT '',
        updated_at    TEXT,
        next_attempt  REAL NOT NULL DEFAULT 0,
        first_attempt REAL,
        message_id    TEXT NOT NULL,
        PRIMARY KEY (issue_id, subscriber_id)
    ) WITHOUT ROWID;
    INSERT INTO deliveries_v4 (issue_id, subscriber_id, email, name, edition, state, attempts,
                               last_reply, updated_at, next_attempt, first_attempt, message_id)
        SELECT issue_id, subscriber_id, email, name, edition,
               CASE WHEN state = 'pending' AND attempts > 0 THEN 'deferred' ELSE state END,
               attempts, last_reply, updated_at, next_attempt,
               CASE WHEN attempts > 0 THEN unixepoch(updated_at) END, message_id
        FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v4 RENAME TO deliveries;
    CREATE INDEX deliveries_state ON deliveries (issue_id, state, next_attempt);

    ALTER TABLE sends ADD COLUMN issue_dir TEXT NOT NULL DEFAULT '';
    ALTER TABLE sends ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE sends ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'held', 'done'));
    UPDATE sends SET state = 'done' WHERE finished_at IS NOT NULL;

    CREATE TABLE frozen_editions (
        issue_id      TEXT NOT NULL,
        edition       TEXT NOT NULL,
        frozen        TEXT NOT NULL,
        PRIMARY KEY (issue_id, edition)
    );

    CREATE TABLE schedules (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        issue_id      TEXT NOT NULL,
        issue_dir     TEXT NOT NULL,
        at            REAL NOT NULL,
        zone          TEXT NOT NULL,
        grace         REAL NOT NULL,
        rebuild       INTEGER NOT NULL DEFAULT 0,
        options       TEXT NOT NULL DEFAULT '{}',
        inputs        TEXT NOT NULL DEFAULT '{}',
        state         TEXT NOT NULL DEFAULT 'scheduled'
                      CHECK (state IN ('scheduled', 'started', 'missed', 'cancelled',
                                       'refused')),
        note          TEXT NOT NULL DEFAULT '',
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE UNIQUE INDEX schedules_waiting ON schedules (issue_id) WHERE state = 'scheduled';
    """
)

MIGRATIONS.append(
    # 5: the public archive. Which issues are on the web is worked out from `sends` (an issue
    # whose send has started is public) and from an editor's word, kept here: `published`
    # puts an issue that was not sent on the web, `unpublished` takes any issue off it.
    # archive_entries remembers, per issue and language, a digest of what the page says, so
    # that a feed's `updated` moves only when an issue is corrected, never on a rebuild; and
    # when the entry was first public, which its tag: id carries for good.
    """
    CREATE TABLE archive_issues (
        issue_id      TEXT PRIMARY KEY,
        state         TEXT NOT NULL CHECK (state IN ('published', 'unpublished')),
        changed_at    TEXT NOT NULL
    );
    CREATE TABLE archive_entries (
        issue_id      TEXT NOT NULL,
        lang          TEXT NOT NULL CHECK (lang IN ('en', 'fr')),
        digest        TEXT NOT NULL,
        published_at  TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (issue_id, lang)
    ) WITHOUT ROWID;
    """
)

LIST_IDENTITY = (
    # The list's own id, random, which every link's signature covers (see tokens.py): two
    # lists that share NEWSLETTER_SECRET no longer accept each other's links. Links mailed
    # before this migration were signed without it; they stay valid for 90 days (CASL asks
    # for 60 after sending), and only for the subscribers who existed then.
    """
    CREATE TABLE list_identity (
        only_row      INTEGER PRIMARY KEY CHECK (only_row = 1),
        uid           TEXT NOT NULL,
        legacy_until  TEXT NOT NULL,
        legacy_max_id INTEGER NOT NULL
    );
    INSERT INTO list_identity (only_row, uid, legacy_until, legacy_max_id) VALUES (
        1,
        lower(hex(randomblob(16))),
        strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+90 days'),
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'), 0)
    );
    """
)
MIGRATIONS.append(LIST_IDENTITY)

MIGRATIONS.append(
    # 7: joining by the web form (double opt-in) and the proof of consent.
    #
    # signup_requests: a request waiting for its confirmation click. It is not a subscriber:
    # it lives here, apart, is never mailed an issue and counted nowhere else, and goes away
    # 7 days after it was made (or once confirmed and its link has expired). One open
    # request per address; asking again refreshes it. The link carries the id and a MAC
    # over the id and `nonce`. ip and user_agent are kept only with RECORD_CONSENT_IP.
    #
    # signup_limits: one row per attempt, keyed by a keyed hash of the IP address or of the
    # address asked for, so that the limits hold across processes and restarts without
    # keeping either in clear. Rows older than a day are deleted.
    #
    # consent_texts and consents: the proof (CASL, GDPR art. 7(1)). consents is append-only
    # (the triggers refuse any change) and outlives the subscriber, like subscriber_events;
    # email is the email_key. A consent text is kept once, under the hash of its words.
    """
    CREATE TABLE signup_requests (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL,
        name          TEXT NOT NULL DEFAULT '',
        language      TEXT NOT NULL CHECK (language IN ('en', 'fr', 'both')),
        page_language TEXT NOT NULL CHECK (page_language IN ('en', 'fr', 'both')),
        method        TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        requested_at  TEXT NOT NULL,
        expires_at    TEXT NOT NULL,
        mailed_at     TEXT,
        confirmed_at  TEXT,
        subscriber_id INTEGER,
        form_url      TEXT NOT NULL,
        text_hash     TEXT NOT NULL,
        ip            TEXT NOT NULL DEFAULT '',
        user_agent    TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX signup_requests_open ON signup_requests (email_key)
        WHERE confirmed_at IS NULL;
    CREATE INDEX signup_requests_expiry ON signup_requests (expires_at);

    CREATE TABLE signup_limits (
        key           TEXT NOT NULL,
        at            TEXT NOT NULL
    );
    CREATE INDEX signup_limits_key ON signup_limits (key, at);
    CREATE INDEX signup_limits_at ON signup_limits (at);

    CREATE TABLE consent_texts (
        hash          TEXT PRIMARY KEY,
        version       TEXT NOT NULL,
        language      TEXT NOT NULL,
        text          TEXT NOT NULL,
        first_used    TEXT NOT NULL
    );

    CREATE TABLE consents (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        subscriber_id      INTEGER NOT NULL,
        email              TEXT NOT NULL,
        basis              TEXT NOT NULL CHECK (basis IN ('express', 'implied')),
        method             TEXT NOT NULL,
        recorded_at        TEXT NOT NULL,
        consent_date       TEXT NOT NULL DEFAULT '',
        requested_at       TEXT NOT NULL DEFAULT '',
        confirmed_at       TEXT NOT NULL DEFAULT '',
        form_url           TEXT NOT NULL DEFAULT '',
        text_version       TEXT NOT NULL DEFAULT '',
        text_hash          TEXT NOT NULL DEFAULT '',
        language           TEXT NOT NULL DEFAULT '',
        request_ip         TEXT NOT NULL DEFAULT '',
        request_user_agent TEXT NOT NULL DEFAULT '',
        confirm_ip         TEXT NOT NULL DEFAULT '',
        confirm_user_agent TEXT NOT NULL DEFAULT '',
        note               TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX consents_subscriber ON consents (subscriber_id, id);
    CREATE INDEX consents_email ON consents (email);
    CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
    BEGIN
        SELECT RAISE(ABORT, 'consent records are append-only');
    END;
    CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents
    BEGIN
        SELECT RAISE(ABORT, 'consent records are append-only');
    END;
    """
)

MIGRATIONS.append(
    # 8: what comes back after a send: bounces (DSN), complaints (ARF), mailto unsubscribes,
    # and the refusals a server gave during the send itself.
    # - `bounce_messages`: each message read once, by a fingerprint (the SHA-256 of its bytes;
    #   `send:ISSUE:ID` for a refusal during a send). Recording it and its events is one
    #   commit; moving it out of the mailbox comes after, so a crash between the two finds it
    #   recorded and only moves it: never counted twice.
    # - `bounce_events`: one per report and recipient, with the class, the RFC 3463 status,
    #   the server's own words, how it was matched to a delivery and what it did.
    # - `mailbox_uids`: POP3 has no folders: the UIDLs already recorded, deleted next time.
    """
    CREATE TABLE bounce_messages (
        fingerprint   TEXT PRIMARY KEY,
        origin        TEXT NOT NULL,
        received_at   TEXT NOT NULL,
        outcome       TEXT NOT NULL
                      CHECK (outcome IN ('processed', 'ignored', 'unrecognised')),
        note          TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE bounce_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint   TEXT NOT NULL REFERENCES bounce_messages (fingerprint),
        at            TEXT NOT NULL,
        class         TEXT NOT NULL
                      CHECK (class IN ('hard', 'soft', 'blocked', 'complaint', 'unsubscribe',
                                       'ignored', 'unrecognised')),
        source        TEXT NOT NULL,
        subscriber_id INTEGER,
        email         TEXT NOT NULL DEFAULT '',
        issue_id      TEXT,
        status        TEXT NOT NULL DEFAULT '',
        diagnostic    TEXT NOT NULL DEFAULT '',
        domain        TEXT NOT NULL DEFAULT '',
        matched_by    TEXT NOT NULL DEFAULT '',
        action        TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX bounce_events_subscriber ON bounce_events (subscriber_id, issue_id);
    CREATE INDEX bounce_events_at ON bounce_events (at);
    CREATE TABLE mailbox_uids (
        mailbox       TEXT NOT NULL,
        uid           TEXT NOT NULL,
        fingerprint   TEXT NOT NULL,
        PRIMARY KEY (mailbox, uid)
    ) WITHOUT ROWID;
    """
)

MIGRATIONS.append(
    # 9: one person, one address. Addresses are now compared without regard to case, the
    # local part too (every mailbox provider does; RFC 5321 allows either), so that
    # KEVIN.Smith@Example.ORG and kevin.smith@example.org stop getting two copies. Rows that
    # differ only in case are merged into the one with the most restrictive status (a
    # complaint, then an unsubscribe, then a bounce, then the oldest): its history takes the
    # other's (audit trail, consent records, bounce reports), `subscriber_merges` keeps what
    # was merged (links already mailed to the other still find the person; the CLI says what
    # it merged), and the keys are folded everywhere they are kept.
    """
    CREATE TABLE subscriber_merges (
        merged_id     INTEGER PRIMARY KEY,
        kept_id       INTEGER NOT NULL,
        email         TEXT NOT NULL,
        status        TEXT NOT NULL,
        language      TEXT NOT NULL,
        at            TEXT NOT NULL,
        reported      INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO subscriber_merges (merged_id, kept_id, email, status, language, at)
        SELECT s.id,
               (SELECT k.id FROM subscribers k WHERE lower(k.email_key) = lower(s.email_key)
                ORDER BY CASE k.status WHEN 'complained' THEN 0 WHEN 'unsubscribed' THEN 1
                                       WHEN 'bounced' THEN 2 ELSE 3 END, k.id
                LIMIT 1),
               s.email, s.status, s.language, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')
        FROM subscribers s
        WHERE EXISTS (SELECT 1 FROM subscribers o
                      WHERE o.id != s.id AND lower(o.email_key) = lower(s.email_key));
    DELETE FROM subscriber_merges WHERE merged_id = kept_id;
    UPDATE subscriber_events
        SET subscriber_id = (SELECT kept_id FROM subscriber_merges
                             WHERE merged_id = subscriber_events.subscriber_id)
        WHERE subscriber_id IN (SELECT merged_id FROM subscriber_merges);
    INSERT INTO subscriber_events (subscriber_id, email, at, kind, route, detail)
        SELECT kept_id, lower(email), at, 'update', 'migration:same-address',
               'merged #' || merged_id || ' ' || email || ' (' || status || ', ' || language
               || ') into this subscriber: the same address in another case'
        FROM subscriber_merges;
    UPDATE bounce_events
        SET subscriber_id = (SELECT kept_id FROM subscriber_merges
                             WHERE merged_id = bounce_events.subscriber_id)
        WHERE subscriber_id IN (SELECT merged_id FROM subscriber_merges);
    DELETE FROM subscribers WHERE id IN (SELECT merged_id FROM subscriber_merges);
    UPDATE subscribers SET email_key = lower(email_key);
    UPDATE subscriber_events SET email = lower(email);

    -- Consent records are append-only; here, once, their key column takes the new key and a
    -- merged person's records follow them to the row kept (what they prove is untouched),
    -- and the guard is set again in the same transaction.
    DROP TRIGGER consents_no_update;
    UPDATE consents
        SET email = lower(email),
            subscriber_id = coalesce((SELECT kept_id FROM subscriber_merges
                                      WHERE merged_id = consents.subscriber_id), subscriber_id);
    CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
    BEGIN
        SELECT RAISE(ABORT, 'consent records are append-only');
    END;
    -- one open signup request per address whatever its case: the latest stays
    DELETE FROM signup_requests WHERE confirmed_at IS NULL AND id NOT IN
        (SELECT max(id) FROM signup_requests WHERE confirmed_at IS NULL
         GROUP BY lower(email_key));
    UPDATE signup_requests
        SET email_key = lower(email_key),
            subscriber_id = coalesce((SELECT kept_id FROM subscriber_merges
                                      WHERE merged_id = signup_requests.subscriber_id),
                                     subscriber_id);
    """
)

MIGRATIONS.append(
    # 10: the ledger as a work queue. A worker claims rows in batches: each `sending` row
    # names its `owner` and a `lease_until` (epoch seconds); a worker renews its leases
    # while it lives, and a row whose lease has lapsed is turned `uncertain` by any other
    # worker (its message may have gone). Outcomes are recorded only where the owner still
    # holds the row. send_workers: who took part in a send, their share and when last seen.
    """
    ALTER TABLE deliveries ADD COLUMN owner TEXT;
    ALTER TABLE deliveries ADD COLUMN lease_until REAL;
    CREATE TABLE send_workers (
        issue_id      TEXT NOT NULL,
        worker        TEXT NOT NULL,
        host          TEXT NOT NULL,
        pid           INTEGER NOT NULL,
        started_at    REAL NOT NULL,
        seen_at       REAL NOT NULL,
        sent          INTEGER NOT NULL DEFAULT 0,
        failed        INTEGER NOT NULL DEFAULT 0,
        deferred      INTEGER NOT NULL DEFAULT 0,
        uncertain     INTEGER NOT NULL DEFAULT 0,
        finished_at   REAL,
        PRIMARY KEY (issue_id, worker)
    );
    """
)
