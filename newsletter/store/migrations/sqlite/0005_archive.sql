-- 5: the public archive. Which issues are on the web is worked out from `sends` (an issue
-- whose send has started is public) and from an editor's word, kept here: `published`
-- puts an issue that was not sent on the web, `unpublished` takes any issue off it.
-- archive_entries remembers, per issue and language, a digest of what the page says, so
-- that a feed's `updated` moves only when an issue is corrected, never on a rebuild; and
-- when the entry was first public, which its tag: id carries for good.
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
