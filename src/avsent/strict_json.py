"""Standard JSON for every file and ``--json`` output avsent writes.

Python's ``json`` writes a NaN or an infinity as a bare ``NaN``/``Infinity``, which is not
JSON: other readers (``jq``, JavaScript, most languages' parsers) reject the whole file. A
value that is not a number is written as ``null`` instead.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, **kwargs)`` with non-finite floats as ``null``."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(value) for value in obj]
    return obj
