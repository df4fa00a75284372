"""Checking a clip list before any training, and reading users' manifest files.

Every problem is collected and reported at once (a user fixing a 2,000-row manifest
should not discover its errors one run at a time). Problems name ``file:line`` when the
clip came from a manifest.
"""

from __future__ import annotations

import csv
import errno
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from avsent.contracts import Clip
from avsent.errors import DatasetProblems

SPLIT_NAMES = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "label", "speaker", "split")


def find_problems(
    clips: Sequence[Clip],
    class_names: Sequence[str],
    *,
    locations: Sequence[str] | None = None,
) -> list[str]:
    """Everything wrong with a clip list: missing files, unknown labels, duplicates, empty classes.

    ``locations`` (one per clip, e.g. ``"data.csv:12"``) prefixes each clip's problems.
    """
    where = list(locations) if locations is not None else [str(c.path) for c in clips]
    problems: list[str] = []
    if not clips:
        return ["no clips found"]
    known = set(class_names)
    first_seen: dict[Path, str] = {}
    for clip, loc in zip(clips, where, strict=True):
        prefix = loc if loc == str(clip.path) else f"{loc}: {clip.path}"
        if not clip.path.is_file():
            problems.append(f"{prefix}: {_why_not_a_file(clip.path)}")
        if clip.label not in known:
            problems.append(
                f"{prefix}: unknown label {clip.label!r} (classes: {', '.join(class_names)})"
            )
        if clip.split is not None and clip.split not in SPLIT_NAMES:
            problems.append(
                f"{prefix}: split {clip.split!r} is not one of {', '.join(SPLIT_NAMES)}"
            )
        key = _key(clip.path)
        if key in first_seen:
            problems.append(f"{prefix}: duplicate path (first listed at {first_seen[key]})")
        else:
            first_seen[key] = loc
    counts = Counter(c.label for c in clips)
    problems += [f"class {name!r} has no clips" for name in class_names if counts[name] == 0]
    return problems


def validate_clips(
    clips: Sequence[Clip],
    class_names: Sequence[str],
    source: str,
    *,
    locations: Sequence[str] | None = None,
    problems: Sequence[str] = (),
) -> None:
    """Raise :class:`DatasetProblems` listing ``problems`` plus every problem of ``clips``."""
    found = [*problems, *find_problems(clips, class_names, locations=locations)]
    if found:
        raise DatasetProblems(source, found)


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return path.absolute()


def _why_not_a_file(path: Path) -> str:
    try:
        path.stat()
    except OSError as exc:
        return "symlink loop" if exc.errno == errno.ELOOP else "file not found"
    return "not a file"


# -- manifest files --------------------------------------------------------------------


def read_manifest(path: str | Path) -> tuple[list[Clip], list[str], list[str]]:
    """A CSV (header row) or JSONL manifest → (clips, their ``file:line``, row problems).

    Columns/keys: ``path``, ``label`` (required), ``speaker``, ``split`` (optional).
    Relative paths are resolved against the manifest's folder, so a data folder with its
    manifest can be moved as a whole.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetProblems(str(path), ["manifest file not found"])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetProblems(str(path), [f"cannot read manifest ({exc})"]) from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows, problems = _jsonl_rows(text, path)
    else:
        rows, problems = _csv_rows(text, path)
    clips, locations = [], []
    for line, row in rows:
        loc = f"{path}:{line}"
        missing = [k for k in ("path", "label") if not str(row.get(k) or "").strip()]
        if missing:
            problems.append((line, f"{loc}: missing {' and '.join(missing)}"))
            continue
        clip_path = Path(str(row["path"]).strip()).expanduser()
        if not clip_path.is_absolute():
            clip_path = path.parent / clip_path
        clips.append(
            Clip(
                clip_path,
                str(row["label"]).strip(),
                _optional(row.get("speaker")),
                _optional(row.get("split")),
            )
        )
        locations.append(loc)
    return clips, locations, [text for _, text in sorted(problems, key=lambda p: p[0])]


Rows = list[tuple[int, dict]]
Problems = list[tuple[int, str]]  #: (line, message), so problems can be listed in file order


def _csv_rows(text: str, path: Path) -> tuple[Rows, Problems]:
    first = text.split("\n", 1)[0]
    if not text.strip():
        return [], [(0, f"{path}: empty manifest")]
    dialect = csv.excel_tab if "\t" in first and "," not in first else csv.excel
    # read from the text itself, not split lines: a quoted field may hold a newline
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = [h.strip().lower() for h in next(reader)]
    problems = []
    unknown = [h for h in header if h not in MANIFEST_COLUMNS]
    if unknown or "path" not in header or "label" not in header:
        problems.append(
            (
                1,
                f"{path}:1: header must name columns from {', '.join(MANIFEST_COLUMNS)} "
                f"(path and label required), got {', '.join(header) or 'nothing'}",
            )
        )
        return [], problems
    rows = []
    start = reader.line_num + 1  # first line of the next row: a row may span several lines
    for values in reader:
        number, start = start, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            problems.append(
                (number, f"{path}:{number}: expected {len(header)} fields, got {len(values)}")
            )
            continue
        rows.append((number, dict(zip(header, values, strict=True))))
    return rows, problems


def _jsonl_rows(text: str, path: Path) -> tuple[Rows, Problems]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            problems.append((number, f"{path}:{number}: not valid JSON ({exc.args[0]})"))
            continue
        if not isinstance(row, dict):
            problems.append((number, f"{path}:{number}: expected an object with path and label"))
            continue
        unknown = sorted(set(row) - set(MANIFEST_COLUMNS))
        if unknown:
            problems.append((number, f"{path}:{number}: unknown keys {', '.join(unknown)}"))
            continue
        rows.append((number, row))
    return rows, problems


def _optional(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
