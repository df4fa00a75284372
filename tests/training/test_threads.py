"""The avsent command makes idle OpenMP threads sleep, set before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from avsent.training.threads import PASSIVE_WAITS, passive_waits

#: records OMP_WAIT_POLICY at the moment something first imports torch
PROBE = """
import importlib.abc, json, os, sys
seen = []
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")})
sys.meta_path.insert(0, Probe())
import avsent.cli
import torch
print(json.dumps(seen[0]))
"""


def _env_at_torch_import(**env: str) -> dict[str, str | None]:
    base = {k: v for k, v in os.environ.items() if k not in PASSIVE_WAITS}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cli_sets_passive_waits_before_torch_loads() -> None:
    assert _env_at_torch_import() == PASSIVE_WAITS


def test_a_value_the_user_set_wins() -> None:
    assert _env_at_torch_import(OMP_WAIT_POLICY="ACTIVE")["OMP_WAIT_POLICY"] == "ACTIVE"
    assert passive_waits({"KMP_BLOCKTIME": "200"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
