"""Joining the list from the web: the form, double opt-in by e-mail, coming back after leaving.

requests.py   pending requests and the limits on asking (part of the subscriber store)
stamps.py     signed tokens: the confirmation link, the form's timestamp
texts.py      the consent wording (editable) and its version and hash
mail.py       the confirmation e-mail (stdlib email), sent through the usual transport
forms.py      the form: what it shows, reading and checking what comes back
pages.py      the web routes: /subscribe, /abonnement, /confirm, /cancel, coming back
snippet.py    the form as a self-contained HTML snippet for another site
"""
