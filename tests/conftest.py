"""Shared fixtures: where the real media lives, and a registry that tests may extend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVSENT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Tests run many small torch ops; one thread each keeps 2-core machines responsive.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def on_ci() -> bool:
    """CI sets ``CI=true``; there the real media is laid beside the clone."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def shared_data() -> Path:
    """The real recordings in ../shared/data, or a skip saying why they are missing.

    On CI the folder is always there, so its absence fails the test instead: a silent
    skip would drop every real-media check from the run unnoticed."""
    if not SHARED_DATA.is_dir():
        message = f"real media not found at {SHARED_DATA} (set AVSENT_SHARED_DATA)"
        if on_ci():
            pytest.fail(f"{message}; CI must have it", pytrace=False)
        pytest.skip(message)
    return SHARED_DATA
