"""The public archive: every sent (or published) issue as a static web site with feeds.

`site.build_site` is the pipeline; `paths` says where each page lives, and is all that the
emails need (their "View in browser" link), so this package imports nothing on its own.
"""
