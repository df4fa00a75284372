"""The docstrings' examples run (doctest) in the default test run; the API reference pages
name modules that exist (``./run .ci/docs`` renders them, warnings as errors)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
DOCS = SRC.parent / "docs"
#: every module whose docstrings hold an example, found by reading the source
WITH_EXAMPLES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for p in (SRC / "avsent").rglob("*.py")
    if ">>> " in p.read_text(encoding="utf-8")
)


def test_the_examples_are_found() -> None:
    assert {"avsent", "avsent.model", "avsent.pipeline"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_reference_pages_name_real_modules() -> None:
    pages = sorted((DOCS / "reference").glob("*.md"))
    assert pages
    for page in pages:
        [target] = [
            line[4:].strip() for line in page.read_text().splitlines() if line.startswith("::: ")
        ]
        importlib.import_module(target)
        assert target in (SRC.parent / "mkdocs.yml").read_text(), f"{page}: not in mkdocs.yml's nav"
