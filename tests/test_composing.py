"""What an editor meets while composing: French titles, YAML mistakes, the scaffolds,
subjects cut in an inbox, alt text, template mistakes, and the output folder's rights."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner

from newsletter.build import build_issue, write_build
from newsletter.checks import CLIP_WARNING
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.content import read_brief_text
from newsletter.render import Templates

from .conftest import DEMO_ISSUE, ROOT


@pytest.fixture
def demo_build(workdir: Path):
    settings = load_settings(None, environ={})
    return build_issue(workdir / "issues" / DEMO_ISSUE, settings.identity, Templates())


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o755), (0o027, 0o750), (0o002, 0o775)])
def test_the_output_folder_follows_the_umask(demo_build, workdir: Path, umask, mode) -> None:
    old = os.umask(umask)
    try:
        out = write_build(demo_build, workdir / "build" / "x")
        write_build(demo_build, out)  # a rebuild replaces it with the same rights
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert stat.S_IMODE((out / "en.html").stat().st_mode) == mode & 0o666


# --- what an editor types, and the one line they get back ------------------------------

FR = "issues/briefs/putin-trump-syria-statement.fr.md"
EN = "issues/briefs/da-nang-apec-summit.en.md"
BEIDOU = "issues/briefs/beidou-navigation-satellites.en.md"
TEMPLATES = "templates"
POUTINE = "title: Poutine et Trump appellent toutes les nations à venir en aide à la Syrie"
MASTHEAD = '<mj-text><div id="top"><h1>{{ name }}</h1><p class="m">{{ l.org }}</p></div></mj-text>'
ALT = "  alt: A Long March 3B rocket lifts off at night from the Xichang launch centre, "


def invoke(*args: str, env: dict[str, str] | None = None):
    """The command in-process, as `newsletter ARGS` (click's runner: no interpreter start)."""
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def edit(workdir: Path, rel: str, old: str, new: str) -> None:
    path = workdir / rel
    text = path.read_text("utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), "utf-8")


def own_templates(workdir: Path) -> Path:
    shutil.copytree(ROOT / "templates", workdir / TEMPLATES)
    return workdir / TEMPLATES


COMPOSING_ERRORS = {
    "a French title with ' : '": (
        lambda w: edit(w, FR, POUTINE, "title: Hydro-Québec : un contrat record"),
        f"{FR}:2: broken front matter: the ': ' at column 21 cannot stand inside a value "
        'without quotes; quote the whole value: title: "Hydro-Québec : un contrat record"',
    ),
    "a title quoting with guillemets and a colon": (
        lambda w: edit(w, FR, POUTINE, "title: « Non » : le Québec dit non"),
        f"{FR}:2: broken front matter: the ': ' at column 16 cannot stand inside a value "
        'without quotes; quote the whole value: title: "« Non » : le Québec dit non"',
    ),
    "an unclosed list": (
        lambda w: edit(w, EN, "source: Pacific Wire", "source: [Pacific Wire"),
        f"{EN}:4: broken front matter: the '[' at column 9 opens a list that is not closed; "
        "close it with ']' on this line, or, if the bracket is part of the text, quote the "
        'whole value: source: "[Pacific Wire"',
    ),
    "text after a closing quote": (
        lambda w: edit(w, EN, "source: Pacific Wire", 'source: "Pacific" Wire'),
        f"{EN}:4: broken front matter: text after a closing quote or bracket at column 19; "
        'quote the whole value: source: "\\"Pacific\\" Wire"',
    ),
    "a title that YAML reads as a list": (
        lambda w: edit(w, EN, "title: APEC Leaders", "title: [APEC, Leaders]\n# was: "),
        f"{EN}:2: 'title' must be one line of text; quote it: title: \"[APEC, Leaders]\"",
    ),
    "an unclosed quote": (
        lambda w: edit(w, EN, "source: Pacific Wire", 'source: "Pacific Wire'),
        f"{EN}:4: broken front matter: the quote at column 9 is not closed; end the value "
        'with the same quote (") on this line',
    ),
    "a title in emphasis": (
        lambda w: edit(w, EN, "title: APEC Leaders", "title: *APEC* Leaders"),
        f"{EN}:2: broken front matter: a value cannot start with '*' (column 8) without "
        'quotes; quote the whole value: title: "*APEC* Leaders Close Da Nang Summit With a '
        'Pledge on Connectivity"',
    ),
    "an inline image with no alt text": (
        lambda w: edit(
            w, EN, "\nThe week was", "\n![](https://news.example.org/d.jpg)\n\nThe week was"
        ),
        f"{EN}:10: image https://news.example.org/d.jpg has no alt text; describe it between "
        "the brackets: ![what it shows](https://news.example.org/d.jpg) (a picture that is "
        'only decoration goes in the front matter, with alt: "")',
    ),
    "a front-matter image with no alt text": (
        lambda w: edit(w, BEIDOU, ALT, "  # no alt: "),
        f"{BEIDOU}:7: image has no 'alt' text; describe the picture for readers who cannot "
        'see it, or write alt: "" if it is only decoration',
    ),
    "a misspelt MJML tag": (
        lambda w: edit(
            w, f"{TEMPLATES}/masthead.mjml.j2", MASTHEAD, MASTHEAD.replace("-text", "-txt")
        ),
        f"{TEMPLATES}/masthead.mjml.j2:15: unknown MJML tag <mj-txt> (did you mean "
        "<mj-text>?); MJML would copy it into the email as it is",
    ),
    "a tag left open in an included template": (
        lambda w: edit(w, f"{TEMPLATES}/footer.mjml.j2", "</mj-text>\n", "\n"),
        f"{TEMPLATES}/footer.mjml.j2:3: MJML does not compile: <mj-text> is not closed: add "
        "</mj-text> before the </mj-column> of line 7",
    ),
}


@pytest.mark.parametrize("case", sorted(COMPOSING_ERRORS))
def test_composing_errors_get_one_exact_line(case: str, workdir: Path) -> None:
    break_it, expected = COMPOSING_ERRORS[case]
    templates = own_templates(workdir)
    break_it(workdir)
    result = invoke("build", f"issues/{DEMO_ISSUE}", env={"NEWSLETTER_TEMPLATES": TEMPLATES})
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: {expected}"]
    assert not (workdir / "build").exists()
    assert templates.is_dir()


def test_the_quoted_form_shown_is_the_fix(workdir: Path) -> None:
    edit(workdir, FR, POUTINE, 'title: "Hydro-Québec : un contrat record"')
    edit(workdir, EN, "source: Pacific Wire", 'source: "\\"Pacific\\" Wire"')
    result = invoke("build", f"issues/{DEMO_ISSUE}")
    assert result.exit_code == 0, result.stderr
    html = (workdir / "build" / DEMO_ISSUE / "fr.html").read_text("utf-8")
    assert "Hydro-Québec\u00a0: un contrat record" in html  # French spacing, as typed
    assert '· "Pacific" Wire' in (workdir / "build" / DEMO_ISSUE / "en.txt").read_text("utf-8")


def test_plain_values_stay_the_text_typed(workdir: Path) -> None:
    # YAML 1.1 reads these as false, 750, true and a date; a brief holds text
    edit(workdir, FR, POUTINE, "title: Non")
    edit(workdir, EN, "title: APEC Leaders", "title: 12:30\n# was: ")
    edit(workdir, EN, "source: Pacific Wire", "source: ON")
    assert read_brief_text(workdir / FR).title == "Non"
    brief = read_brief_text(workdir / EN)
    assert (brief.title, brief.source) == ("12:30", "ON")
    assert str(brief.date) == "2017-11-11"


def test_an_empty_alt_is_a_decorative_image(workdir: Path) -> None:
    edit(workdir, BEIDOU, ALT, '  alt: ""\n  # was: ')
    result = invoke("build", f"issues/{DEMO_ISSUE}")
    assert result.exit_code == 0, result.stderr
    html = (workdir / "build" / DEMO_ISSUE / "en.html").read_text("utf-8")
    assert 'src="https://news.example.org/images/2017/11/beidou-launch.jpg" alt=""' in html
    assert "alt text" not in result.stdout


def test_new_brief_writes_values_that_survive_french_punctuation(workdir: Path) -> None:
    result = invoke("new", "brief", "hydro-quebec")
    assert result.exit_code == 0, result.stderr
    brief = workdir / "issues" / "briefs" / "hydro-quebec.fr.md"
    text = brief.read_text("utf-8")
    assert 'title: "Titre de la brève"' in text and 'source: "EIRNS"' in text
    # the editor types inside the quotes, French punctuation and all
    brief.write_text(
        text.replace("Titre de la brève", "Hydro-Québec : « un contrat record » ! #1"), "utf-8"
    )
    assert read_brief_text(brief).title == "Hydro-Québec : « un contrat record » ! #1"


def test_compose_writes_a_short_bilingual_subject_and_preheader(workdir: Path) -> None:
    result = invoke("compose", "--date", "2017-11-27")
    assert result.exit_code == 0, result.stderr
    manifest = (workdir / "issues" / "2017-11-27" / "issue.toml").read_text("utf-8")
    assert '[bilingual]\nsubject = "News / Brèves No. 2 / no 2"\n' in manifest
    check = invoke("check", "issues/2017-11-27")
    assert check.exit_code == 0, check.stderr
    bilingual = [line for line in check.stdout.splitlines() if "bilingual:" in line]
    # only the placeholder to fill in: no subject too long, no text the editor never wrote
    assert bilingual == [
        "warning: bilingual: preheader is still the placeholder of 'newsletter compose'"
    ]


def test_a_subject_an_inbox_would_cut_is_pointed_out(workdir: Path) -> None:
    long = "News / Brèves No. 1: Putin and Trump on Syria, APEC in Da Nang, and trade deals"
    edit(
        workdir,
        f"issues/{DEMO_ISSUE}/issue.toml",
        "News / Brèves No. 1: Putin and Trump on Syria, APEC in Da Nang",
        long,
    )
    result = invoke("check", f"issues/{DEMO_ISSUE}")
    assert result.exit_code == 0, result.stderr
    assert (
        f"warning: en: subject is {len(long)} characters; inboxes cut it after about 78: "
        "shorten it, or put what matters first"
    ) in result.stdout.splitlines()
    assert not [line for line in result.stdout.splitlines() if "fr: subject" in line]


def test_a_ten_brief_bilingual_edition_stays_under_the_clipping_warning(workdir: Path) -> None:
    edit(
        workdir,
        f"issues/{DEMO_ISSUE}/issue.toml",
        '    "montreal-375-closing",\n',
        '    "montreal-375-closing",\n    "churchill-rail-line",\n',
    )
    settings = load_settings(None, environ={})
    build = build_issue(workdir / "issues" / DEMO_ISSUE, settings.identity, Templates())
    bilingual = next(e for e in build.editions if e.name == "bilingual")
    assert len(build.issue.briefs) == 10
    assert bilingual.html_part_bytes < CLIP_WARNING  # dark mode and contents included
    assert not [f for f in bilingual.findings if "KB" in f.message]


@pytest.mark.parametrize(
    ("titles", "en_h1", "fr_h1"),
    [
        ({}, "News / Brèves", "News / Brèves"),  # the committee's own masthead, in both
        ({"NEWSLETTER_TITLE_EN": "Info", "NEWSLETTER_TITLE_FR": "Info"}, "Info", "Info"),
    ],
)
def test_every_masthead_shows_the_whole_name(workdir: Path, titles, en_h1, fr_h1) -> None:
    settings = load_settings(None, environ=titles)
    build = build_issue(workdir / "issues" / DEMO_ISSUE, settings.identity, Templates())
    for edition, expected in (("en", en_h1), ("fr", fr_h1), ("bilingual", en_h1)):
        tree = lxml.html.fromstring(next(e.html for e in build.editions if e.name == edition))
        (top,) = tree.xpath("//*[@id='top']")
        assert top.xpath("string(.//h1)") == expected
    fr = lxml.html.fromstring(next(e.html for e in build.editions if e.name == "fr"))
    foreign = fr.xpath("//*[@id='top']//h1/span/@lang")
    assert foreign == (["en-CA"] if not titles else [])  # "News" marked English there


def test_a_first_brief_or_issue_says_it_starts_the_issues_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run from the wrong folder, `new` would quietly start a second content tree there
    monkeypatch.chdir(tmp_path)
    bad = invoke("new", "brief", "Bad Slug!")  # nothing made, so nothing said of a folder
    assert bad.exit_code == 2 and "folder" not in bad.stdout + bad.stderr
    assert not (tmp_path / "issues").exists()
    first = invoke("new", "brief", "hello")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines()[0] == (
        f"no issues/ folder was here ({tmp_path}): started one; run from your project's"
        " folder, or give --issues-dir, if that is not what you meant"
    )
    assert (tmp_path / "issues" / "briefs" / "hello.en.md").is_file()
    again = invoke("new", "issue", "--date", "2017-12-01")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines() == ["created issues/2017-12-01/issue.toml"]
