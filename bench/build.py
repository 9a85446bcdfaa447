"""Time the build of the demo issue: each stage in-process, then the whole command as a
user runs it, side by side with one cold compile of one edition by the Node `mjml` CLI.

Run: .venv/bin/python bench/build.py [--repeat N] [--runs N] [--mjml PATH] [ISSUE_DIR]

Prints the first (cold) build, then the median of N warm builds, per stage, in ms; then
the median wall time of `newsletter --help`, of a whole `newsletter build` (three
editions, a new process each time) and of `mjml` compiling the English edition's MJML
(a new Node process each time), after one warm-up run of each, interleaved.

The Node column needs the reference MJML, kept out of the repository, e.g.:
    npm install --prefix /tmp/mjml-node mjml
It is looked for at --mjml, $MJML_NODE, /tmp/mjml-node/node_modules/.bin/mjml, then
`mjml` on the PATH; without it that column is skipped.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

t_import = time.perf_counter()
from newsletter.build import build_issue  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.content import read_issue  # noqa: E402
from newsletter.render import HTML_TEMPLATE, Templates  # noqa: E402
from newsletter.views import _body, edition_view  # noqa: E402

IMPORT_S = time.perf_counter() - t_import
STAGES = ("parse", "views", "jinja", "mjml", "premailer", "text", "mime", "total")
NODE_MJML_DEFAULT = Path("/tmp/mjml-node/node_modules/.bin/mjml")


def stages(issue: Path, repeat: int) -> None:
    settings = load_settings(None, environ={})
    templates = Templates(settings.templates_dir)
    cold = build_issue(issue, settings.identity, templates)
    runs = []
    for _ in range(repeat):
        _body.cache_clear()  # measure the Markdown work, not the cache
        runs.append(build_issue(issue, settings.identity, templates).timings)
    print(f"demo issue: {issue} ({len(cold.issue.briefs)} briefs, 3 editions)")
    print(f"import of the pipeline: {IMPORT_S * 1000:.0f} ms")
    print(f"{'stage':<10} {'cold ms':>9} {'warm ms (median of ' + str(repeat) + ')':>24}")
    for stage in STAGES:
        warm = statistics.median(r[stage] for r in runs)
        print(f"{stage:<10} {cold.timings[stage] * 1000:>9.1f} {warm * 1000:>24.1f}")
    for e in cold.editions:
        print(
            f"{e.name:<10} html {len(e.html.encode()):>7,} B  encoded part "
            f"{e.html_part_bytes:>7,} B  message {len(e.eml):>7,} B"
        )


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU (user + system) is less moved by other load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def node_mjml(given: str | None) -> Path | None:
    if given:  # asked for this one: no other
        return Path(given) if Path(given).is_file() else None
    for candidate in (os.environ.get("MJML_NODE"), NODE_MJML_DEFAULT):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("mjml")
    return Path(found) if found else None


def side_by_side(issue: Path, runs: int, mjml_path: str | None) -> None:
    script = Path(sys.executable).with_name("newsletter")
    newsletter = [str(script)] if script.is_file() else [sys.executable, "-m", "newsletter"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    # As installed: Python reads its modules' cached bytecode. With PYTHONDONTWRITEBYTECODE
    # (some sandboxes set it) our own modules would be compiled anew in every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    node = node_mjml(mjml_path)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)  # no .env here: the embedded defaults, as on a fresh machine
        commands = {
            "help": [*newsletter, "--help"],
            "build": [*newsletter, "build", str(issue), "--out", "out"],
        }
        if node is not None:
            settings = load_settings(None, environ={})
            templates = Templates(settings.templates_dir)
            view = edition_view(read_issue(issue), "en", settings.identity, templates.labels)
            source = work / "en.mjml"
            source.write_text(templates.render(HTML_TEMPLATE, view), "utf-8")
            commands["node"] = [str(node), str(source), "-o", str(work / "en.html")]
        for command in commands.values():  # warm-up: bytecode written, files in the OS cache
            timed(command, work, env)
        # Interleaved, so that a change in the machine's load hits every column alike.
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(timed(command, work, env))
    wall = {name: statistics.median(w for w, _ in values) for name, values in times.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in times.items()}
    print(f"\nwhole commands, median of {runs} runs, a new process each, interleaved:")
    print(f"  {'':<40} {'wall ms':>8} {'CPU ms':>8}")
    rows = [("newsletter --help", "help"), ("newsletter build (3 editions)", "build")]
    if node is not None:
        rows.append(("node mjml, cold, one edition (en)", "node"))
    for label, name in rows:
        print(f"  {label:<40} {wall[name] * 1000:>8.0f} {cpu[name] * 1000:>8.0f}")
    if node is None:
        print(
            "  node mjml (1 edition): skipped, not found; "
            "npm install --prefix /tmp/mjml-node mjml (outside the repo), or --mjml PATH"
        )
        return
    print(f"  (node: {node})")
    wins = sum(b[0] < n[0] for b, n in zip(times["build"], times["node"], strict=True))
    verdict = "less" if wall["build"] < wall["node"] else "MORE"
    print(
        f"  the whole build takes {verdict} wall time than one cold Node compile "
        f"({wall['build'] / wall['node']:.2f}x; faster in {wins} of {runs} pairs; "
        f"CPU {cpu['build'] / cpu['node']:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("issue", nargs="?", default=str(ROOT / "issues" / "2017-11"))
    parser.add_argument("--repeat", type=int, default=20, help="warm in-process builds")
    parser.add_argument("--runs", type=int, default=10, help="processes per whole command")
    parser.add_argument("--mjml", help="the Node mjml CLI (see the module's docstring)")
    args = parser.parse_args()
    issue = Path(args.issue).resolve()
    stages(issue, args.repeat)
    side_by_side(issue, args.runs, args.mjml)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"wall time of this run: {time.perf_counter() - t0:.2f} s")
