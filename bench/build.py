"""Time each stage of building the demo issue: parse, Jinja, MJML, premailer, text, MIME.

Run: .venv/bin/python bench/build.py [--repeat N] [ISSUE_DIR]
Prints the first (cold) build, then the median of N warm builds, per stage, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

t_import = time.perf_counter()
from newsletter.build import build_issue  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.render import Templates  # noqa: E402
from newsletter.views import _body  # noqa: E402

IMPORT_S = time.perf_counter() - t_import
STAGES = ("parse", "views", "jinja", "mjml", "premailer", "text", "mime", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("issue", nargs="?", default=str(ROOT / "issues" / "2017-11"))
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    settings = load_settings(None, environ={})
    templates = Templates(settings.templates_dir)
    cold = build_issue(Path(args.issue), settings.identity, templates)
    runs = []
    for _ in range(args.repeat):
        _body.cache_clear()  # measure the Markdown work, not the cache
        runs.append(build_issue(Path(args.issue), settings.identity, templates).timings)
    print(f"demo issue: {args.issue} ({len(cold.issue.briefs)} briefs, 3 editions)")
    print(f"import of the pipeline: {IMPORT_S * 1000:.0f} ms")
    print(f"{'stage':<10} {'cold ms':>9} {'warm ms (median of ' + str(args.repeat) + ')':>24}")
    for stage in STAGES:
        warm = statistics.median(r[stage] for r in runs)
        print(f"{stage:<10} {cold.timings[stage] * 1000:>9.1f} {warm * 1000:>24.1f}")
    for e in cold.editions:
        print(
            f"{e.name:<10} html {len(e.html.encode()):>7,} B  encoded part "
            f"{e.html_part_bytes:>7,} B  message {len(e.eml):>7,} B"
        )


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"wall time of this run: {time.perf_counter() - t0:.2f} s")
