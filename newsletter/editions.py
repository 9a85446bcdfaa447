"""The names every stage shares about an issue's editions, in a module that imports nothing:
a send's worker processes use them without loading the renderer."""

EDITIONS = ("en", "fr", "bilingual")
# Per-recipient parts are plain ASCII sentinels: premailer and libxml2 leave them alone,
# and sending replaces them (see message.py).
UNSUBSCRIBE_SENTINEL = "https://sentinel.invalid/nl-unsubscribe-0000"
PREFERENCES_SENTINEL = "https://sentinel.invalid/nl-preferences-0000"
