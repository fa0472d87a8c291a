"""The repository's own papers: a license, whole tables, no reference to a missing file."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from epcsim.cli import app

ROOT = Path(__file__).resolve().parents[1]


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [ROOT / f for f in out]


def test_the_license_is_the_one_pyproject_names() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_every_markdown_file_named_is_in_the_repository() -> None:
    files = tracked("*.py", "*.md", "*.toml")
    assert len(files) > 50
    missing = []
    for f in files:
        for name in set(re.findall(r"[\w./-]*[\w-]\.md\b", f.read_text(errors="replace"))):
            candidates = [ROOT / name, ROOT / "docs" / name, f.parent / name]
            if not any(c.is_file() for c in candidates):
                missing.append(f"{f.relative_to(ROOT)}: {name}")
    assert not missing, missing


def test_the_readme_command_table_is_whole_and_names_every_command() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("| command | what it does |")
    lines = text[start:].splitlines()
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append(line)
    after = text[start:].splitlines()[len(table):]
    # No row of the table stranded below a blank line.
    assert not any(line.startswith("| `epcsim") for line in after[:5])
    rows = "\n".join(table[2:])
    for name in app.commands:
        assert f"`epcsim {name}" in rows, name


def test_the_package_version_is_the_one_results_record() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["dynamic"] == ["version"]
    assert meta["tool"]["hatch"]["version"]["path"] == "src/epcsim/__init__.py"
