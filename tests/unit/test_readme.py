"""The README stays a short user's page whose commands and links work.

- README.md has at most 300 lines;
- every ``driftrec ...`` command in a README code block or inline code span, and in the
  code blocks of docs/*.md, names subcommands and flags the CLI's parser has;
- every relative link in README.md and docs/*.md resolves to a file (and, for a link into
  a Markdown file with ``#anchor``, to one of its headings);
- the Configuration section keeps the markers between which the settings table is
  generated.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_LINES = 300

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`(driftrec [^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _code_blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def _without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def _commands(line: str) -> Iterator[list[str]]:
    """The argument lists of every ``driftrec`` command on one shell line."""
    line = re.sub(r"<[^<>]+>", "PLACEHOLDER", line)  # `<tiny model dir>`
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        tokens = list(lex)
    except ValueError:  # an unbalanced quote in prose-like text: not a command line
        return
    for i, tok in enumerate(tokens):
        if tok == "driftrec" and (i == 0 or tokens[i - 1] in SEPARATORS):
            args = []
            for t in tokens[i + 1 :]:
                if t in SEPARATORS:
                    break
                args.append(t)
            yield args


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        lines = [ln for block in _code_blocks(text) for ln in block.splitlines()]
        if page == README:
            lines += INLINE.findall(_without_code_blocks(text))
        for line in lines:
            for args in _commands(line):
                found.append((_rel(page), line.strip(), args))
    return found


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    """The ``driftrec`` parser, as :func:`driftrec.cli.main` builds it."""
    from driftrec.cli import build_parser

    return build_parser()


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _options(p: argparse.ArgumentParser) -> set[str]:
    return {opt for action in p._actions for opt in action.option_strings}


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; move details to docs/ (at most {MAX_LINES})"


def test_readme_shows_driftrec_commands() -> None:
    readme = [args for page, _, args in _documented_commands() if page == "README.md"]
    assert len(readme) >= 10
    assert ["demo"] in readme


def test_documented_commands_exist(parser: argparse.ArgumentParser) -> None:
    problems = []
    for page, line, args in _documented_commands():
        p, path = parser, ["driftrec"]
        for tok in args:
            subs = _subcommands(p)
            if subs is None or tok.startswith("-"):
                break
            if tok not in subs:
                problems.append(
                    f"{page}: `{line}`: {' '.join(path)} has no subcommand {tok!r} "
                    f"(it has {', '.join(sorted(subs))})"
                )
                p = None
                break
            p, path = subs[tok], [*path, tok]
        if p is None:
            continue
        known = _options(p)
        for tok in args:
            if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", tok):
                flag = tok.split("=", 1)[0]
                if flag not in known:
                    problems.append(f"{page}: `{line}`: {' '.join(path)} has no option {flag}")
    assert not problems, "\n".join(problems)


def _slug(heading: str) -> str:
    s = re.sub(r"[`*_]", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _without_code_blocks(page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)}


def test_relative_links_resolve() -> None:
    problems = []
    for page in PAGES:
        for target in LINK.findall(_without_code_blocks(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                problems.append(f"{_rel(page)}: link {target} -> {dest} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{_rel(page)}: link {target}: no heading #{anchor} in {dest.name}")
    assert not problems, "\n".join(problems)


def test_configuration_keeps_the_settings_table_markers() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    section = text.index("\n## Configuration")
    nxt = text.find("\n## ", section + 1)
    assert section < text.index(start) < text.index(end) < (nxt if nxt > 0 else len(text))
