"""The README's "Layout" block names every module and package of saslauthpy/ (and of
saslauthpy/backends/ and saslauthpy/cli/), and nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "saslauthpy"


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def entries(block: str) -> dict[str, str]:
    """Each ``saslauthpy/...`` path named at a line's start or after a gap, with its text
    (the continuation lines, indented, belong to the entry above)."""
    out: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line[:1].isspace() and current is not None:
            out[current] += " " + line.strip()
            continue
        for match in re.finditer(r"(?:^|\s{2,})(\S+)\s+(.*?)(?=\s{2,}\S+/|$)", line):
            current = match.group(1)
            out[current] = match.group(2)
    return out


def children(directory: Path) -> set[str]:
    """Modules (``x.py``) and packages or data folders (``x/``) directly in ``directory``."""
    names = set()
    for path in directory.iterdir():
        if path.name.startswith(("_", ".")):
            continue
        if path.suffix == ".py":
            names.add(path.name)
        elif path.is_dir():
            names.add(path.name + "/")
    return names


def named_within(text: str) -> set[str]:
    return set(re.findall(r"\b[\w]+\.py\b|\b[\w]+/", text))


def test_every_path_the_block_names_exists():
    block = layout_block()
    named = set(re.findall(r"\bsaslauthpy/[\w/]*(?:\.py)?", block))
    assert named, "the Layout block names no saslauthpy/ path"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"README Layout names what does not exist: {missing}"


def test_every_module_and_package_is_named():
    block = layout_block()
    named = set(re.findall(r"\bsaslauthpy/[\w/]*(?:\.py)?", block))
    top = {f"saslauthpy/{name}" for name in children(PACKAGE) if not name.startswith("__")}
    assert not sorted(top - named), f"README Layout misses {sorted(top - named)}"


def test_the_backends_and_cli_entries_name_their_contents_and_nothing_else():
    found = entries(layout_block())
    for sub in ("backends", "cli"):
        text = found[f"saslauthpy/{sub}/"]
        named = named_within(text)
        present = children(PACKAGE / sub)
        assert present <= named, f"saslauthpy/{sub}/ in README misses {sorted(present - named)}"
        assert named <= present, f"saslauthpy/{sub}/ in README names {sorted(named - present)}"
