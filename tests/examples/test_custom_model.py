"""examples/custom_model.py runs as a script and prints probabilities for both models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "custom_model.py"


def test_custom_model_example_runs_and_prints_probabilities():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "named parts" in out and "own GRU audio encoder" in out
    rows = [line for line in out.splitlines() if line.strip().startswith("clip ")]
    assert len(rows) == 4
    for row in rows:
        probs = [float(p) for p in re.findall(r" (\d\.\d\d)(?:,|$)", row)]
        assert len(probs) in (7, 3)
        assert abs(sum(probs) - 1.0) < 0.05
