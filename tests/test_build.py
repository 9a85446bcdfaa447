"""`newsletter build` / `check` on the demo issue and on hostile or broken content."""

from __future__ import annotations

import email
import re
import shutil
import tomllib
from email import policy
from pathlib import Path

import lxml.html
import pytest

from newsletter.checks import CLIP_LIMIT
from newsletter.typography import NBSP, NNBSP

from .conftest import DEMO_ISSUE, ROOT, clean_env, run_cli


def parse_html(path: Path):
    return lxml.html.fromstring(path.read_bytes())


def visible_text(tree) -> str:
    for bad in tree.xpath("//style | //script | //title"):
        bad.drop_tree()
    return re.sub(r"[ \t\r\n]+", " ", tree.text_content())  # keeps no-break spaces


@pytest.fixture
def built(cli, workdir: Path) -> Path:
    result = cli("build", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 0, result.stderr
    return workdir / "build" / DEMO_ISSUE


def test_build_writes_every_edition_and_prints_the_table(cli, workdir: Path) -> None:
    result = cli("build", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 0, result.stderr
    out = workdir / "build" / DEMO_ISSUE
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{e}.{x}" for e in ("en", "fr", "bilingual") for x in ("html", "txt", "eml")
    )
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:5]}
    for edition in ("en", "fr", "bilingual"):
        html_bytes = int(rows[edition][1].replace(",", ""))
        eml_bytes = int(rows[edition][3].replace(",", ""))
        assert html_bytes == len((out / f"{edition}.html").read_bytes())
        assert eml_bytes == len((out / f"{edition}.eml").read_bytes())
    assert "wrote 9 files" in result.stdout


def test_html_lang_and_bilingual_blocks(built: Path) -> None:
    assert parse_html(built / "en.html").get("lang") == "en-CA"
    assert parse_html(built / "fr.html").get("lang") == "fr-CA"
    tree = parse_html(built / "bilingual.html")
    assert tree.get("lang") == "en-CA"
    french_section = tree.get_element_by_id("fr")
    assert french_section.get("lang") == "fr-CA"
    # every French brief block says it is French; the one brief with no French text is
    # a stub in English pointing to its full text in the English section
    blocks = [el for el in tree.iter() if (el.get("id") or "").startswith("fr-")]
    assert len(blocks) == 9
    for block in blocks:
        if block.get("id") == "fr-iter-fusion-milestone":
            assert block.get("lang") == "en-CA"
            assert block.xpath(".//a[@href='#en-iter-fusion-milestone']")
        else:
            assert block.get("lang") == "fr-CA", block.get("id")
    # the contents lead to each half and to each brief in it, in that half's language
    (jump,) = tree.xpath("//a[@href='#fr']")
    assert jump.xpath("ancestor::*[@lang][1]/@lang") == ["fr-CA"]
    # the footer identifies the sender in both languages, the French block marked French
    (org,) = tree.xpath("//p[@class='f'][starts-with(text(), 'Comité pour la République')]")
    assert org.get("lang") == "fr-CA"


def test_french_typography_and_dates_in_the_french_edition(built: Path) -> None:
    text = visible_text(parse_html(built / "fr.html"))
    assert "11 novembre 2017" in text
    assert f"«{NNBSP}" in text and f"{NNBSP}»" in text
    assert f"{NBSP}:" in text
    assert " :" not in text and " ?" not in text and " !" not in text and "« " not in text
    assert "'" not in text  # every apostrophe typographic
    english = visible_text(parse_html(built / "en.html"))
    assert "November 11, 2017" in english


def test_missing_translation_is_shown_with_a_note(built: Path) -> None:
    tree = parse_html(built / "fr.html")
    block = tree.get_element_by_id("fr-iter-fusion-milestone")
    assert block.get("lang") == "en-CA"
    note = block.xpath(".//p[@class='n']")[0]
    assert note.get("lang") == "fr-CA"
    assert note.text_content().strip() == "En anglais seulement"
    assert "ITER" in block.xpath(".//h2")[0].text_content()
    # the French date and labels around the English text say they are French
    meta = block.xpath(".//p[@class='m']")[0]
    assert meta.get("lang") == "fr-CA" and "novembre 2017" in meta.text_content()
    original = block.xpath(".//a[text()='Lire l’original']")[0]
    assert original.getparent().get("lang") == "fr-CA"
    text = (built / "fr.txt").read_text()
    assert "[En anglais seulement]" in text


def test_strict_refuses_a_missing_translation(cli, workdir: Path) -> None:
    result = cli("build", f"issues/{DEMO_ISSUE}", "--strict")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: issues/briefs/iter-fusion-milestone.fr.md: brief 'iter-fusion-milestone' has no"
        " French version (--strict); write it, or build without --strict"
    ]
    assert not (workdir / "build").exists()


def test_the_eml_is_a_complete_multipart_message(built: Path) -> None:
    for edition, lang in (("en", "en-CA"), ("fr", "fr-CA"), ("bilingual", "en-CA, fr-CA")):
        msg = email.message_from_bytes(
            (built / f"{edition}.eml").read_bytes(), policy=policy.default
        )
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["To"] == "Sample Reader <reader@example.org>"
        assert msg["Content-Language"] == lang
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = msg.get_body(("html",)).get_content()
        on_disk = (built / f"{edition}.html").read_text()
        assert html.replace("\r\n", "\n").rstrip("\n") == on_disk.rstrip("\n")
        assert "https://news.example.org/unsubscribe/SAMPLE-TOKEN" in html
        text = msg.get_body(("plain",)).get_content()
        assert "https://news.example.org/unsubscribe/SAMPLE-TOKEN" in text
        assert "sentinel.invalid" not in html + text
    fr = email.message_from_bytes((built / "fr.eml").read_bytes(), policy=policy.default)
    assert fr["Subject"].startswith("News / Brèves no 1")
    assert b"=?utf-8?" in (built / "fr.eml").read_bytes().split(b"\r\n\r\n")[0]


def test_footer_has_unsubscribe_and_postal_address(built: Path) -> None:
    for edition in ("en", "fr", "bilingual"):
        tree = parse_html(built / f"{edition}.html")
        links = tree.xpath("//a[contains(@href, '/unsubscribe/SAMPLE-TOKEN')]")
        assert links, edition
        assert "PO Box 1234" in visible_text(tree)
    assert "Se désabonner" in visible_text(parse_html(built / "fr.html"))


SENDER = {
    "en": ("Committee for the Republic of Canada", "Contact:", "news@example.org"),
    "fr": (
        "Comité pour la République du Canada",
        f"Pour nous joindre{NBSP}:",
        "breves@example.org",
    ),
}


def test_footer_identifies_the_sender_in_each_language(built: Path) -> None:
    # CASL: name, mailing address and a contact, in the language of each part of the edition.
    for edition, langs in (("en", ["en"]), ("fr", ["fr"]), ("bilingual", ["en", "fr"])):
        html = visible_text(parse_html(built / f"{edition}.html"))
        text = (built / f"{edition}.txt").read_text()
        for lang in langs:
            name, label, contact = SENDER[lang]
            block = f"{name}\nPO Box 1234, Station B, Ottawa ON  K1P 0A1, Canada\n{label} {contact}"
            assert block + " · https://news.example.org" in text, (edition, lang)
            assert f"{label} {contact} · news.example.org" in html, (edition, lang)
    tree = parse_html(built / "bilingual.html")
    assert tree.xpath("//a[@href='mailto:breves@example.org']/ancestor::p[@lang='fr-CA']")


def test_footer_takes_the_french_address_and_the_contact_from_the_settings(cli, workdir) -> None:
    (workdir / ".env").write_text(
        "NEWSLETTER_POSTAL_ADDRESS_FR=C.P. 1234, succursale B, Ottawa (Ontario)  K1P 0A1\n"
        "NEWSLETTER_CONTACT=+1 613-555-0100\n"
    )
    assert cli("build", f"issues/{DEMO_ISSUE}").returncode == 0
    built = workdir / "build" / DEMO_ISSUE
    text = (built / "bilingual.txt").read_text()
    assert "PO Box 1234, Station B, Ottawa ON  K1P 0A1, Canada\nContact: +1 613-555-0100" in text
    assert f"C.P. 1234, succursale B, Ottawa (Ontario)  K1P 0A1\nPour nous joindre{NBSP}:" in text
    tree = parse_html(built / "fr.html")
    assert tree.xpath("//a[@href='tel:+16135550100']")


def test_plain_text_is_readable_at_72_columns(built: Path) -> None:
    text = (built / "en.txt").read_text()
    for line in text.splitlines():
        assert len(line) <= 72 or line.split()[-1].startswith("http"), line
    assert "Putin and Trump Call on All Nations to Help Syria" in text
    assert "November 11, 2017 · EIRNS" in text
    assert "Unsubscribe: https://news.example.org/unsubscribe/SAMPLE-TOKEN" in text
    assert "<p>" not in text and "&amp;" not in text


def test_bilingual_fits_under_gmail_clipping(built: Path) -> None:
    msg = email.message_from_bytes((built / "bilingual.eml").read_bytes(), policy=policy.default)
    html_part = msg.get_body(("html",))
    encoded = html_part.get_payload(decode=False).encode()
    assert len(encoded) < CLIP_LIMIT
    assert len(html_part.get_content().encode()) > 40_000  # really holds the nine briefs


def test_oversized_issue_is_an_error(cli, workdir: Path) -> None:
    briefs = workdir / "issues" / "briefs"
    slugs = []
    for n in range(14):
        for lang in ("en", "fr"):
            shutil.copy(briefs / f"da-nang-apec-summit.{lang}.md", briefs / f"copy-{n}.{lang}.md")
        slugs.append(f"copy-{n}")
    manifest = workdir / "issues" / DEMO_ISSUE / "issue.toml"
    text = manifest.read_text()
    start = text.index("briefs = [")
    end = text.index("]", start)
    manifest.write_text(text[:start] + f"briefs = {slugs!r}".replace("'", '"') + text[end + 1 :])
    result = cli("check", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 1
    assert "error: bilingual: HTML part is" in result.stderr
    assert "Gmail clips past 102 KB" in result.stderr


def test_check_writes_nothing(cli, workdir: Path) -> None:
    result = cli("check", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert not (workdir / "build").exists()


HOSTILE = """---
title: <script>alert('title')</script> Hostile
date: 2017-11-12
source: Somewhere
link: javascript:alert(1)
---
Hello <script>alert(1)</script> and <img src=x onerror="alert(2)">.

<style>body{display:none}</style>

<div onclick="alert(3)">click</div>

[a trap](javascript:alert(4)) and [data](data:text/html,hi) and ![a dot](x.png)
"""


def test_hostile_brief_content_never_becomes_markup(cli, workdir: Path) -> None:
    (workdir / "issues/briefs/hostile.en.md").write_text(HOSTILE)
    manifest = workdir / "issues" / DEMO_ISSUE / "issue.toml"
    manifest.write_text(manifest.read_text().replace("briefs = [", 'briefs = [\n    "hostile",'))
    result = cli("build", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 0, result.stderr
    assert "link 'javascript:alert(1)' is not an absolute" in result.stdout
    # links in the body that markdown-it refused are reported too, not left silently as text
    assert "link 'javascript:alert(4' is not an absolute" in result.stdout
    assert "link 'data:text/html,hi' is not an absolute" in result.stdout
    assert "image 'x.png' is not an absolute https: URL" in result.stdout
    for edition in ("en", "fr", "bilingual"):
        tree = parse_html(workdir / "build" / DEMO_ISSUE / f"{edition}.html")
        assert not tree.xpath("//script")
        assert not tree.xpath("//*[@onerror or @onclick]")
        assert not [
            a for a in tree.xpath("//a/@href") if a.lower().startswith(("javascript", "data"))
        ]
        assert not [s for s in tree.xpath("//style") if "display:none" in (s.text or "")]
        block = tree.get_element_by_id(f"{'fr' if edition == 'fr' else 'en'}-hostile")
        assert "<script>alert(1)</script>" in block.text_content()  # shown as text, harmlessly


# --- bad input: one line, exit 2, nothing written ------------------------------------


def _write(workdir: Path, rel: str, content: str | bytes) -> None:
    path = workdir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


SEED_EN = "issues/briefs/putin-trump-syria-statement.en.md"
SEED_FR = "issues/briefs/putin-trump-syria-statement.fr.md"
MANIFEST = f"issues/{DEMO_ISSUE}/issue.toml"


def _replace(workdir: Path, rel: str, old: str, new: str) -> None:
    path = workdir / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


BAD_INPUTS = {
    "broken yaml": (
        lambda w: _replace(w, SEED_EN, "source: EIRNS", "source: [EIRNS"),
        f"{SEED_EN}:4: broken front matter",
    ),
    "text after a quoted value": (
        lambda w: _replace(w, SEED_EN, "source: EIRNS", 'source: "EIRNS" wire'),
        f"{SEED_EN}:4: broken front matter",
    ),
    "missing title": (
        lambda w: _replace(w, SEED_EN, "title: ", "headline: "),
        f"{SEED_EN}:2: unknown front matter key 'headline'",
    ),
    "missing date": (
        lambda w: _replace(w, SEED_EN, "date: 2017-11-11\n", ""),
        f"{SEED_EN}:2: missing 'date' in the front matter",
    ),
    "invalid date": (
        lambda w: _replace(w, SEED_EN, "date: 2017-11-11", "date: 2017-13-45"),
        f"{SEED_EN}:3: invalid date '2017-13-45'; write it as YYYY-MM-DD",
    ),
    "unknown language suffix": (
        lambda w: _write(w, "issues/briefs/syria.de.md", "---\ntitle: x\n---\n"),
        "issues/briefs/syria.de.md: unknown language suffix '.de'; use .en.md or .fr.md",
    ),
    "unknown slug": (
        lambda w: _replace(w, MANIFEST, '"da-nang-apec-summit"', '"da-nang-apec-sumit"'),
        f"{MANIFEST}:5: brief 'da-nang-apec-sumit' not found in issues/briefs/ "
        "(did you mean 'da-nang-apec-summit'?)",
    ),
    "slug twice": (
        lambda w: _replace(
            w,
            MANIFEST,
            '"montreal-375-closing",',
            '"montreal-375-closing",\n    "da-nang-apec-summit",',
        ),
        f"{MANIFEST}:13: brief 'da-nang-apec-summit' is listed twice",
    ),
    "invalid toml": (
        lambda w: _replace(w, MANIFEST, "number = 1", "number = = 1"),
        f"{MANIFEST}:1: invalid TOML",
    ),
    "not utf-8": (
        lambda w: (w / SEED_FR).write_bytes((w / SEED_FR).read_text().encode("latin-1")),
        f"{SEED_FR}:2: not valid UTF-8; save the file as UTF-8",
    ),
}


BAD_INPUTS["empty subject"] = (
    lambda w: _replace(w, MANIFEST, 'subject = "News / Brèves no 1 :', 'subject = "" #'),
    f"{MANIFEST}:25: [fr] subject is empty; write the line readers see in their inbox",
)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_one_line_and_no_output(case: str, cli, workdir: Path) -> None:
    break_it, expected = BAD_INPUTS[case]
    break_it(workdir)
    result = cli("build", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {expected}"), lines[0]
    assert "Traceback" not in result.stderr
    assert not (workdir / "build").exists()


def test_broken_template_names_the_template(cli, workdir: Path) -> None:
    templates = workdir / "templates"
    shutil.copytree(ROOT / "templates", templates)
    path = templates / "footer.mjml.j2"
    path.write_text(path.read_text().replace("</mj-column>", "", 1))
    result = cli("build", f"issues/{DEMO_ISSUE}", NEWSLETTER_TEMPLATES=str(templates))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (  # the included template that is wrong, not the one including it
        f"error: {path}:2: MJML does not compile: <mj-column> is not closed: add </mj-column> "
        "before the </mj-section> of line 8"
    )
    assert not (workdir / "build").exists()
    path.write_text("{% if %}")
    result = cli("build", f"issues/{DEMO_ISSUE}", NEWSLETTER_TEMPLATES=str(templates))
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}:1: template syntax")


TEMPLATE_MISTAKES = {
    "label removed": (
        "labels.toml",
        lambda text: text.replace('issue = "Issue"\n', ""),
        'labels.toml: [en] needs issue = "..." (a text); add it back',
    ),
    "not utf-8": (
        "footer.mjml.j2",
        lambda text: text.replace("</mj-column>", "</mj-column>\n\udcff", 1),
        "footer.mjml.j2:{line}: not valid UTF-8; save it as UTF-8",
    ),
    "undefined name in an included template": (
        "footer.mjml.j2",
        lambda text: text.replace("</mj-column>", "{{ nope }}</mj-column>", 1),
        "footer.mjml.j2:{line}: 'nope' is undefined; check the name",
    ),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_MISTAKES))
def test_template_mistakes_name_the_file_and_line(case: str, cli, workdir: Path) -> None:
    name, break_it, expected = TEMPLATE_MISTAKES[case]
    templates = workdir / "templates"
    shutil.copytree(ROOT / "templates", templates)
    original = (templates / name).read_text("utf-8")
    broken = break_it(original)
    assert broken != original
    (templates / name).write_bytes(broken.encode("utf-8", "surrogateescape"))
    line = original[: original.index("</mj-column>")].count("\n") + 1 if "mj" in name else 0
    if case == "not utf-8":
        line += 1  # the bad byte sits on the line after the tag
    result = cli("build", f"issues/{DEMO_ISSUE}", NEWSLETTER_TEMPLATES=str(templates))
    assert result.returncode == 2, result.stderr
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith(f"error: {templates}/{expected.format(line=line)}"), message
    assert not (workdir / "build").exists()


def test_a_failed_rebuild_keeps_the_previous_build(cli, built: Path, workdir: Path) -> None:
    before = (built / "en.html").read_bytes()
    _replace(workdir, SEED_EN, "title: ", "titl: ")
    assert cli("build", f"issues/{DEMO_ISSUE}").returncode == 2
    assert (built / "en.html").read_bytes() == before


def test_build_into_a_path_under_a_file_is_one_line(cli, workdir: Path) -> None:
    (workdir / "notes.txt").write_text("a file, not a folder")
    result = cli("build", f"issues/{DEMO_ISSUE}", "--out", "notes.txt/site")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {workdir / 'notes.txt'}: is a file, not a folder; choose another folder with"
        " --out\n"
    )
    assert (workdir / "notes.txt").read_text() == "a file, not a folder"


def test_build_never_replaces_a_folder_holding_other_files(cli, workdir: Path) -> None:
    precious = workdir / "precious"
    precious.mkdir()
    (precious / "thesis.doc").write_text("years of work")
    result = cli("build", f"issues/{DEMO_ISSUE}", "--out", "precious")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "holds other files (thesis.doc, ...); build into an empty or new folder"
    )
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.doc"]


def test_french_accessibility_label_has_real_no_break_spaces(built: Path) -> None:
    tree = parse_html(built / "fr.html")
    label = tree.xpath("//div[@role='article']/@aria-label")[0]
    assert label.startswith(f"News / Brèves no 1{NBSP}: Poutine")
    assert "\\u{" not in (built / "fr.html").read_text()


def test_compose_and_build_report_a_broken_manifest_alike(cli, workdir: Path) -> None:
    _replace(workdir, MANIFEST, "number = 1", "number = = 1")
    expected = (
        f"error: {MANIFEST}:1: invalid TOML: Invalid value; check the quotes, brackets and '=' "
        'of this line (texts go in "quotes", lists in [brackets])'
    )
    for command in (["compose"], ["check", f"issues/{DEMO_ISSUE}"]):
        result = cli(*command)
        assert (result.returncode, result.stderr.strip()) == (2, expected)


def test_compose_picks_new_briefs_then_has_nothing_left(cli, workdir: Path) -> None:
    first = cli("compose", "--date", "2017-11-27")
    assert first.returncode == 0, first.stderr
    assert "  2017-11-20  churchill-rail-line  [en+fr]" in first.stdout
    manifest = (workdir / "issues/2017-11-27/issue.toml").read_text()
    assert "number = 2" in manifest and '"churchill-rail-line",' in manifest
    again = cli("compose", "--date", "2017-11-28")
    assert again.returncode == 2
    assert "no brief dated since issue 2 (2017-11-27) is left" in again.stderr
    # the scaffolded text is flagged, not sent by mistake
    new = cli("new", "brief", "fresh-news")
    assert new.returncode == 0
    assert "created issues/briefs/fresh-news.en.md" in new.stdout
    assert cli("new", "brief", "fresh-news").returncode == 2
    check = cli("check", "issues/2017-11-27")
    assert "preheader is still the placeholder of 'newsletter compose'" in check.stdout


def test_empty_text_is_reported_not_sent_silently(cli, workdir: Path) -> None:
    manifest = workdir / MANIFEST
    text = manifest.read_text("utf-8")
    manifest.write_text(re.sub(r"(?m)^preheader = .*\n", "", text), "utf-8")
    brief = workdir / SEED_FR
    front, _, _ = brief.read_text("utf-8").partition("\n---\n")
    brief.write_text(front + "\n---\n\n", "utf-8")
    result = cli("check", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 0, result.stderr
    warnings = result.stdout.splitlines()
    for edition in ("en", "fr", "bilingual"):
        assert f"warning: {edition}: preheader is empty; inboxes will show the first text " \
            "instead" in warnings  # fmt: skip
    for edition in ("fr", "bilingual"):
        assert (
            f"warning: {edition}: brief 'putin-trump-syria-statement' has no text under its "
            "title in fr-CA; write it, or take the brief out of the issue"
        ) in warnings
    assert not any(w.startswith("warning: en: brief 'putin") for w in warnings)


@pytest.mark.parametrize("issue_id", ["../outside", "briefs", "a/b"])
def test_an_issue_id_must_name_a_folder_under_issues(cli, workdir: Path, issue_id: str) -> None:
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    for command in (["new", "issue"], ["compose", "--date", "2017-11-27"]):
        result = cli(*command, "--id", issue_id)
        assert result.returncode == 2
        assert result.stderr.startswith(f"error: issue id '{issue_id}' must be lowercase letters")
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build"], "error: Missing argument 'ISSUE_DIR'"),  # issue.toml names its issue
        (["new", "issue", "--date", "2017-13-01"], "error: Invalid value for '--date': "),
        (["buid"], "error: No such command 'buid'. Did you mean 'build'?"),
    ],
)
def test_usage_mistakes_get_one_line_too(workdir: Path, args: list[str], expected: str) -> None:
    result = run_cli(*args, cwd=workdir, env=clean_env())
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(expected), line


def test_the_command_alone_shows_its_help(workdir: Path) -> None:
    for args in ([], ["subscribers"]):
        result = run_cli(*args, cwd=workdir, env=clean_env())
        assert result.returncode == 0 and result.stderr == ""
        assert result.stdout.startswith(f"Usage: newsletter {' '.join(args)}".rstrip() + " ")


def test_the_issue_folder_can_be_given_as_dot(workdir: Path) -> None:
    result = run_cli("check", ".", cwd=workdir / "issues" / DEMO_ISSUE, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


BAD_SETTINGS = {
    "non-ascii base url": (
        "NEWSLETTER_BASE_URL=https://brèves.example.org",
        "error: .env:1: NEWSLETTER_BASE_URL='https://brèves.example.org': must be an absolute",
    ),
    "base url with a query": (
        "NEWSLETTER_BASE_URL=https://news.example.org/n?x=1",
        "error: .env:1: NEWSLETTER_BASE_URL='https://news.example.org/n?x=1': must be",
    ),
    "base url with a bad port": (
        "NEWSLETTER_BASE_URL=https://news.example.org:abc",
        "error: .env:1: NEWSLETTER_BASE_URL='https://news.example.org:abc': must be",
    ),
    "base url that is no URL": (
        "NEWSLETTER_BASE_URL=http://[::1",
        "error: .env:1: NEWSLETTER_BASE_URL='http://[::1': must be an absolute",
    ),
    "base url that would break a header": (
        "NEWSLETTER_BASE_URL=https://news.example.org/a>b,c",
        "error: .env:1: NEWSLETTER_BASE_URL='https://news.example.org/a>b,c': must be",
    ),
    "no templates folder": (
        "NEWSLETTER_TEMPLATES=/nonexistent/look",
        "error: .env:1: NEWSLETTER_TEMPLATES='/nonexistent/look': no such templates folder",
    ),
    "a database of no kind this tool knows": (
        "NEWSLETTER_DB=mysql://news@127.0.0.1/news",
        "error: .env:1: NEWSLETTER_DB=mysql://news@127.0.0.1/news: mysql:// is not a database",
    ),
    "a host with its port": (
        "NEWSLETTER_SMTP_HOST=127.0.0.1:8025",
        "error: .env:1: NEWSLETTER_SMTP_HOST='127.0.0.1:8025': is a host and a port; put the "
        "host alone here (e.g. smtp.example.org) and the port in NEWSLETTER_SMTP_PORT",
    ),
    "a host with a space": (
        "NEWSLETTER_SMTP_HOST=mail example.org",
        "error: .env:1: NEWSLETTER_SMTP_HOST='mail example.org': must be a host name or an IP",
    ),
    "a password nobody logs in with": (
        "NEWSLETTER_SMTP_PASSWORD=hunter2",
        "error: .env:1: NEWSLETTER_SMTP_PASSWORD=(value hidden): is set but "
        "NEWSLETTER_SMTP_USER is not",
    ),
    "a port written with an underscore": (
        "NEWSLETTER_SMTP_PORT=8_025",
        "error: .env:1: NEWSLETTER_SMTP_PORT='8_025': must be a whole number",
    ),
    "half a DKIM setup, said where the half is": (
        "NEWSLETTER_TITLE_EN=News\nNEWSLETTER_DKIM_KEY=dkim.pem",
        "error: .env:2: NEWSLETTER_DKIM_KEY is set but NEWSLETTER_DKIM_SELECTOR is empty",
    ),
    "a short secret is not shown": (
        "NEWSLETTER_SECRET=shortsecret",
        "error: .env:1: NEWSLETTER_SECRET=(value hidden): is too short",
    ),
    "the line actually used": (
        "NEWSLETTER_SMTP_PORT_OLD=1\nNEWSLETTER_SMTP_PORT=2525\nNEWSLETTER_SMTP_PORT=99999",
        "error: .env:3: NEWSLETTER_SMTP_PORT='99999': must be a port number",
    ),
    "an unclosed quote": (
        'NEWSLETTER_TITLE_EN=News\nNEWSLETTER_TITLE_FR="Brèves',
        "error: .env:2: cannot read this line; write NEWSLETTER_NAME=value",
    ),
    "a rate that never sends": (
        "NEWSLETTER_RATE=1e-300",
        "error: .env:1: NEWSLETTER_RATE='1e-300': must be 0 (no limit) or at least 0.001",
    ),
    "too many connections": (
        "NEWSLETTER_CONCURRENCY=100000",
        "error: .env:1: NEWSLETTER_CONCURRENCY='100000': must be at most 64 connections",
    ),
    "no time to answer": (
        "NEWSLETTER_SMTP_TIMEOUT=0",
        "error: .env:1: NEWSLETTER_SMTP_TIMEOUT='0': must be more than 0 seconds",
    ),
    "a timeout past any clock": (
        "NEWSLETTER_SMTP_TIMEOUT=1e10",
        "error: .env:1: NEWSLETTER_SMTP_TIMEOUT='1e10': must be at most 3600 seconds",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_bad_settings_get_one_line_naming_the_line(case: str, cli, workdir: Path) -> None:
    content, expected = BAD_SETTINGS[case]
    (workdir / ".env").write_text(content + "\n", "utf-8")
    result = cli("check", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(expected), line
    assert "shortsecret" not in result.stdout + result.stderr


def test_a_misspelt_setting_is_pointed_out(cli, workdir: Path) -> None:
    (workdir / ".env").write_text("NEWSLETTER_TITLE_EN=News\nNEWSLETTER_TITEL_FR=Nouvelles\n")
    result = cli("check", f"issues/{DEMO_ISSUE}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: .env:2: NEWSLETTER_TITEL_FR is not a setting, ignored; "
        "did you mean NEWSLETTER_TITLE_FR?"
    ]


def test_an_explicit_env_file_must_exist_and_settings_are_checked(cli, workdir: Path) -> None:
    missing = cli("--env-file", "nope.env", "check", f"issues/{DEMO_ISSUE}")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: nope.env: no such settings file; check --env-file"
    (workdir / ".env").write_text(
        "NEWSLETTER_BASE_URL=https://news.example.org\nNEWSLETTER_SMTP_PORT=abc\n"
    )
    bad = cli("check", f"issues/{DEMO_ISSUE}")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: .env:2: NEWSLETTER_SMTP_PORT='abc': must be a whole number"
    )
    # the environment wins over .env
    fixed = cli("check", f"issues/{DEMO_ISSUE}", NEWSLETTER_SMTP_PORT="2525")
    assert fixed.returncode == 0, fixed.stderr


def test_the_bilingual_contents_lead_to_every_brief_in_both_languages(built: Path) -> None:
    tree = parse_html(built / "bilingual.html")
    ids = set(tree.xpath("//@id"))
    lists = tree.xpath("//ul[@class='toc']")
    assert len(lists) == 2
    manifest = built.parents[1] / "issues" / DEMO_ISSUE / "issue.toml"
    slugs = tomllib.loads(manifest.read_text("utf-8"))["briefs"]
    for lst, lang in zip(lists, ("en", "fr"), strict=True):
        targets = lst.xpath(".//a/@href")
        assert targets == [f"#{lang}-{slug}" for slug in slugs]
        assert all(t[1:] in ids for t in targets)
        column = lst.xpath("ancestor::*[@lang][1]/@lang")
        assert column == (["fr-CA"] if lang == "fr" else ["en-CA"])
    # the French half starts with a heading, and leads back to the top
    (start,) = tree.xpath("//*[@id='fr']")
    assert start.xpath("string(.//h1)") == "Version française"
    (back,) = start.xpath(".//a")
    assert back.get("href") == "#top" and "top" in ids
    # every in-page link of every edition leads somewhere, and none leaves the message
    for edition in ("en", "fr", "bilingual"):
        tree = parse_html(built / f"{edition}.html")
        ids = set(tree.xpath("//@id"))
        for href in tree.xpath("//a/@href"):
            if href.startswith("#"):
                assert href[1:] in ids, (edition, href)
