-- 3: addresses with a non-ASCII domain, stored as typed by 0.1.0, take their ASCII (IDNA)
-- form, the one lookups now use: otherwise someone who left under `ann@exämple.org` would
-- not be recognised, and an import would add them again. The functions are registered by
-- db.connect (SQL has no IDNA). A non-ASCII local part stays as it is: it never matched.
UPDATE subscribers SET email = nl_ascii_email(email), email_key = nl_email_key(email)
    WHERE email GLOB '*[^ -~]*';
UPDATE subscriber_events SET email = nl_email_key(email) WHERE email GLOB '*[^ -~]*';
UPDATE deliveries SET email = nl_ascii_email(email) WHERE email GLOB '*[^ -~]*';
