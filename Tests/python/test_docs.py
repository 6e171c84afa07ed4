"""The generated reference pages are up to date, every server setting has its line, and every
page the README promises exists."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def ferry_bin():
    binary = Path(os.environ.get("FERRY_BIN", REPO_ROOT / ".build" / "debug" / "ferry"))
    if not binary.is_file():
        pytest.fail(f"ferry binary not found at {binary}: run `swift build` or set FERRY_BIN")
    return binary


def test_reference_pages_are_generated_from_the_current_code():
    result = subprocess.run([str(REPO_ROOT / "scripts" / "gen-docs"), "--check"], capture_output=True, text=True,
                            env={**os.environ, "FERRY_BIN": str(ferry_bin())})
    assert result.returncode == 0, result.stderr


def test_every_setting_declared_in_the_configuration_is_in_the_settings_page():
    source = (REPO_ROOT / "Sources/FerryServer/Configuration/ServerConfiguration.swift").read_text()
    declared = re.findall(r'Key\(name: "([a-z0-9_]+)"', source)
    assert len(declared) >= 30, declared
    page = (REPO_ROOT / "docs/reference/settings.md").read_text()
    for name in declared:
        assert f"| `{name}` | `FERRY_{name.upper()}` |" in page, f"{name} is missing from docs/reference/settings.md"


def test_every_local_link_of_the_docs_leads_to_a_file():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO_ROOT)} links to {target}, which does not exist"


def test_the_readme_keeps_its_two_set_up_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "swift run ferry serve" in readme and "./scripts/test" in readme
    assert "--generate-completion-script" in readme
