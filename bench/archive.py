"""Time `archive build` for an archive of N issues (copies of the demo issue, each published).

Run: .venv/bin/python bench/archive.py [--issues N] [--repeat R]
Prints the first build (which stamps every entry) and the median of R rebuilds, the files
and bytes written, and the time to serve a page from the tree over loopback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import db  # noqa: E402
from newsletter.archive.site import build_site  # noqa: E402
from newsletter.archive.state import ArchiveState, Decision  # noqa: E402
from newsletter.config import load_settings  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def make_issues(folder: Path, count: int) -> list[str]:
    shutil.copytree(ROOT / "issues" / "briefs", folder / "briefs")
    manifest = (ROOT / "issues" / "2017-11" / "issue.toml").read_text("utf-8")
    ids = []
    for n in range(count):
        issue_id = f"issue-{n + 1:04d}"
        (folder / issue_id).mkdir()
        (folder / issue_id / "issue.toml").write_text(
            manifest.replace("number = 1", f"number = {n + 1}"), "utf-8"
        )
        ids.append(issue_id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ids = make_issues(work / "issues", args.issues)
        settings = load_settings(None, environ={"NEWSLETTER_DB": str(work / "bench.db")})
        conn = db.connect(settings.db_path)
        with db.transaction(conn):
            for issue_id in ids:
                ArchiveState(conn).decide(issue_id, Decision.PUBLISHED, NOW)
        conn.close()
        t0 = time.perf_counter()
        first = build_site(settings, work / "issues", work / "site", now=NOW)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            build_site(settings, work / "issues", work / "site", now=NOW)
            warm.append(time.perf_counter() - t0)
        files = [p for p in (work / "site").rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(f"{len(first.issues)} issues (9 briefs each, 3 editions): {len(files)} files, "
              f"{size / 1e6:.1f} MB")  # fmt: skip
        print(f"first build (stamps every entry): {cold:.2f} s ({cold / args.issues * 1000:.1f} "
              "ms an issue)")  # fmt: skip
        median = statistics.median(warm)
        print(f"rebuild, median of {args.repeat}: {median:.2f} s "
              f"({median / args.issues * 1000:.1f} ms an issue)")  # fmt: skip


if __name__ == "__main__":
    main()
