"""Issue -> what the templates see for one edition: plain frozen values, text already
localised and typographically corrected, Markdown already turned into safe HTML."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from markupsafe import Markup

from .archive.paths import absolute, edition_path
from .config import Identity
from .content import LANGS, Brief, Image, Issue
from .editions import EDITIONS, PREFERENCES_SENTINEL, UNSUBSCRIBE_SENTINEL
from .errors import ContentError
from .markup import Html, inline_html, inline_text, to_html, to_text
from .typography import HTML_LANG, colon, long_date, smarten

# The labels this module reads from labels.toml (templates may use more of them).
LABEL_KEYS = (
    "issue", "only_en", "only_fr", "jump", "contents", "version", "jump_back", "why",
    "unsubscribe", "preferences", "contact",
)  # fmt: skip


@dataclass(frozen=True)
class BlockView:
    slug: str
    anchor: str
    html_lang: str  # always written on the block, so screen readers switch voice
    title: str
    title_html: Markup
    date: str
    source: str
    link: str | None
    image: Image | None
    body_html: Markup
    body_text: str
    links: tuple[str, ...]
    images: tuple[tuple[str, str], ...]
    note: str | None  # "English only", in the section's language
    stub_href: str | None  # bilingual edition: the full text is in the other section


@dataclass(frozen=True)
class Jump:
    anchor: str
    html_lang: str
    label: str


@dataclass(frozen=True)
class SectionView:
    lang: str
    html_lang: str
    anchor: str
    foreign: bool
    labels: Mapping[str, str]
    intro_html: Markup
    intro_text: str
    jump: Jump | None  # bilingual: to the other half (the archive's pages show it)
    heading: str | None  # bilingual edition: "Version française" where the French half starts
    back: Jump | None  # and the way back to the top
    blocks: tuple[BlockView, ...]


@dataclass(frozen=True)
class Words:
    """Text in one language; `foreign` when not the edition's, so it is marked with lang=."""

    text: str
    html_lang: str
    foreign: bool


@dataclass(frozen=True)
class MastheadLine:
    html_lang: str
    foreign: bool
    org: str
    issue: str  # "Issue 1"
    date: str


@dataclass(frozen=True)
class MastheadView:
    name: tuple[Words, ...]  # the newsletter's name, in both languages: News / Brèves
    lines: tuple[MastheadLine, ...]  # one per language of the edition


@dataclass(frozen=True)
class ContentsEntry:
    anchor: str
    title: str
    html_lang: str


@dataclass(frozen=True)
class ContentsView:
    """One language's list of the briefs, at the top of the bilingual edition."""

    anchor: str  # where that language's half starts
    html_lang: str
    foreign: bool
    label: str
    entries: tuple[ContentsEntry, ...]


@dataclass(frozen=True)
class FooterView:
    colon: str
    html_lang: str
    foreign: bool
    why: str
    unsubscribe: str
    preferences: str
    org: str  # "" when the same as the language before it
    # The sender's identification in this language (CASL): name, mailing address, contact.
    sender: str
    address: str
    contact_label: str
    contact: str
    contact_href: str  # mailto:, http(s): or tel:; "" for text that is none of these


@dataclass(frozen=True)
class EditionView:
    name: str  # en | fr | bilingual
    lang: str  # the language of <html>
    html_lang: str
    subject: str
    preheader: str
    from_name: str
    from_addr: str
    masthead: MastheadView
    contents: tuple[ContentsView, ...]  # bilingual edition only: () otherwise
    sections: tuple[SectionView, ...]
    footer: tuple[FooterView, ...]
    org: str
    postal_address: str
    base_url: str
    base_url_label: str
    unsubscribe_url: str
    preferences_url: str
    web_url: str  # the edition's page in the public archive: the same for every reader


def localised_labels(labels: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    out = {lang: {k: smarten(v, lang) for k, v in labels[lang].items()} for lang in LANGS}
    for lang in LANGS:
        out[lang]["colon"] = colon(lang)
    return out


def contact_href(contact: str) -> str:
    """A link for a contact (an address, a web page, a phone number), or "" for plain text."""
    text = contact.strip()
    if safe_url(text):
        return text
    if "@" in text and " " not in text:
        return f"mailto:{text}"
    digits = "".join(c for c in text if c.isdigit())
    if 7 <= len(digits) <= 15 and all(c.isdigit() or c in "+-. ()" for c in text):
        return "tel:" + ("+" if text.startswith("+") else "") + digits
    return ""


def safe_url(url: str | None) -> bool:
    """Only web and mail links reach the markup; anything else stays out (and is reported)."""
    return bool(url) and urlsplit(url).scheme in ("https", "http", "mailto")


@lru_cache(maxsize=512)
def _body(markdown: str, lang: str) -> tuple[Html, str]:
    """A brief's body as HTML and text; cached, since it appears in two editions."""
    return to_html(markdown, lang), to_text(markdown, lang)


def _block(brief: Brief, section_lang: str, labels, bilingual: bool) -> BlockView:
    text = brief.text(section_lang)
    note = None
    stub_href = None
    if text is None:
        (other,) = brief.languages
        text = brief.text(other)
        assert text is not None
        note = labels[section_lang][f"only_{other}"]
        if bilingual:
            stub_href = f"#{other}-{brief.slug}"
    lang = text.lang
    body, body_text = _body(text.body, lang)
    for src, alt, line in body.images:
        if not alt.strip():
            raise ContentError(
                f"image {src} has no alt text; describe it between the brackets: "
                f"![what it shows]({src}) (a picture that is only decoration goes in the "
                'front matter, with alt: "")',
                text.path,
                text.body_line + line,
            )
    return BlockView(
        slug=brief.slug,
        anchor=f"{section_lang}-{brief.slug}",
        html_lang=HTML_LANG[lang],
        title=inline_text(text.title, lang),
        title_html=Markup(inline_html(text.title, lang)),
        date=long_date(text.date, section_lang),
        source=text.source,
        link=text.link if safe_url(text.link) else None,
        image=text.image if text.image and safe_url(text.image.src) else None,
        body_html=Markup(body.html),
        body_text=body_text,
        links=body.links + ((text.link,) if text.link else ()),
        images=tuple((src, alt) for src, alt, _ in body.images)
        + (((text.image.src, text.image.alt),) if text.image else ()),
        note=note,
        stub_href=stub_href,
    )


def edition_view(issue: Issue, name: str, identity: Identity, labels) -> EditionView:
    """The view of one edition (`en`, `fr` or `bilingual`) of `issue`."""
    if name not in EDITIONS:
        raise ValueError(name)
    bilingual = name == "bilingual"
    langs = LANGS if bilingual else (name,)
    primary = langs[0]
    labels = localised_labels(labels)
    sections = []
    for i, lang in enumerate(langs):
        intro = issue.text[lang].intro
        starts_half = bilingual and i > 0
        jump = None
        if bilingual:
            other = langs[1 - i]
            jump = Jump(anchor=other, html_lang=HTML_LANG[other], label=labels[lang]["jump"])
        sections.append(
            SectionView(
                lang=lang,
                html_lang=HTML_LANG[lang],
                anchor=lang,
                foreign=lang != primary,
                labels=labels[lang],
                intro_html=Markup(to_html(intro, lang).html) if intro else Markup(""),
                intro_text=to_text(intro, lang) if intro else "",
                jump=jump,
                heading=labels[lang]["version"] if starts_half else None,
                back=Jump("top", HTML_LANG[lang], labels[lang]["jump_back"])
                if starts_half
                else None,
                blocks=tuple(_block(b, lang, labels, bilingual) for b in issue.briefs),
            )
        )
    # The name in both languages, always in the same order, as the committee writes it
    # (News / Brèves): "News" alone reads bare. Once, if both languages name it alike.
    name_langs = LANGS if len({identity.title[lang] for lang in LANGS}) > 1 else (primary,)
    masthead = MastheadView(
        name=tuple(
            Words(identity.title[lang], HTML_LANG[lang], lang != primary) for lang in name_langs
        ),
        lines=tuple(
            MastheadLine(
                html_lang=HTML_LANG[lang],
                foreign=lang != primary,
                org=identity.org[lang],
                issue=f"{labels[lang]['issue']} {issue.number}",
                date=long_date(issue.date, lang),
            )
            for lang in langs
        ),
    )
    contents = ()
    if bilingual:
        contents = tuple(
            ContentsView(
                anchor=s.anchor,
                html_lang=s.html_lang,
                foreign=s.foreign,
                label=s.labels["contents"],
                entries=tuple(ContentsEntry(b.anchor, b.title, b.html_lang) for b in s.blocks),
            )
            for s in sections
        )
    footer = tuple(
        FooterView(
            colon=colon(lang),
            html_lang=HTML_LANG[lang],
            foreign=lang != primary,
            why=labels[lang]["why"],
            unsubscribe=labels[lang]["unsubscribe"],
            preferences=labels[lang]["preferences"],
            org=identity.org[lang]
            if i == 0 or identity.org[lang] != identity.org[langs[0]]
            else "",
            sender=identity.org[lang],
            address=identity.postal[lang],
            contact_label=labels[lang]["contact"],
            contact=identity.contact[lang],
            contact_href=contact_href(identity.contact[lang]),
        )
        for i, lang in enumerate(langs)
    )
    if bilingual:
        subject = issue.bilingual_subject or " / ".join(
            smarten(issue.text[lang].subject, lang) for lang in langs
        )
        preheader = issue.bilingual_preheader or " / ".join(
            smarten(issue.text[lang].preheader, lang)
            for lang in langs
            if issue.text[lang].preheader  # none at all stays empty, and is reported so
        )
        from_name = " / ".join(dict.fromkeys(identity.from_name[lang] for lang in langs))
        org = " / ".join(dict.fromkeys(identity.org[lang] for lang in langs))
    else:
        subject = smarten(issue.text[primary].subject, primary)
        preheader = smarten(issue.text[primary].preheader, primary)
        from_name = identity.from_name[primary]
        org = identity.org[primary]
    return EditionView(
        name=name,
        lang=primary,
        html_lang=HTML_LANG[primary],
        subject=subject,
        preheader=preheader,
        from_name=from_name,
        from_addr=identity.from_addr[primary],
        masthead=masthead,
        contents=contents,
        sections=tuple(sections),
        footer=footer,
        org=org,
        postal_address=identity.postal_address,
        base_url=identity.base_url,
        base_url_label=identity.base_url.split("://", 1)[1],
        unsubscribe_url=UNSUBSCRIBE_SENTINEL,
        preferences_url=PREFERENCES_SENTINEL,
        web_url=absolute(identity.base_url, edition_path(name, issue.id)),
    )


def wrap72(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 72, break_long_words=False, break_on_hyphens=False))
