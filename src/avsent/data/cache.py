"""A content-addressed store of clip features: ``root/<fingerprint>/<sha256>.safetensors``.

The key is the file's content hash plus the front-end fingerprint, so renaming or moving
a corpus keeps its features, while editing a clip or a front-end setting recomputes only
what changed. Entries are written to a temporary file and renamed into place, so a killed
run never leaves a half-written entry; an entry that cannot be read is treated as missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from avsent.config import atomic_write_bytes, atomic_write_text
from avsent.data.features import ClipFeatures

ENTRY_SUFFIX = ".safetensors"
HASH_INDEX = "content-hashes.json"
_CHUNK = 1 << 20
#: a temporary file this old belongs to a run that was killed, not to one still writing
STALE_TEMPORARY_S = 3600.0
#: array name → (dtype, number of dimensions) an entry must have
_ARRAYS = {"audio": (np.float32, 2), "video": (np.uint8, 4), "geometry": (np.float32, 2)}


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks so big videos never sit in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureCache:
    """Features by key ``"<fingerprint>/<content hash>"`` under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._hashes: dict[str, list] | None = None  # loaded on first use
        self._index_dirty = False

    # -- keys -----------------------------------------------------------------------
    def key_for(self, path: str | Path, fingerprint: str) -> str:
        """The key of ``path``'s features under a front-end fingerprint."""
        return f"{fingerprint}/{self.file_hash(path)}"

    def file_hash(self, path: str | Path) -> str:
        """Content hash, memoised by (path, size, mtime) so re-scanning a corpus is cheap."""
        if self._hashes is None:
            self._hashes = self._read_index()
        path = Path(path).resolve()
        stat = path.stat()
        memo = self._hashes.get(str(path))
        if memo is not None and memo[:2] == [stat.st_size, stat.st_mtime_ns]:
            return memo[2]
        digest = content_hash(path)
        self._hashes[str(path)] = [stat.st_size, stat.st_mtime_ns, digest]
        self._index_dirty = True
        return digest

    def save_index(self) -> None:
        """Persist the memo of content hashes (merged with what another process wrote)."""
        if not self._index_dirty or self._hashes is None:
            return
        merged = {**self._read_index(), **self._hashes}
        atomic_write_text(self.root / HASH_INDEX, json.dumps(merged))
        self._index_dirty = False

    def remove_stale_temporaries(self, older_than_s: float = STALE_TEMPORARY_S) -> int:
        """Delete temporary files a killed run left behind; returns how many.

        Only old ones: another machine sharing the cache may be writing a fresh one now.
        """
        removed = 0
        cutoff = time.time() - older_than_s
        for tmp in self.root.glob(f"*/.*{ENTRY_SUFFIX}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
        return removed

    def _read_index(self) -> dict[str, list]:
        try:
            data = json.loads((self.root / HASH_INDEX).read_text())
        except (OSError, ValueError):
            return {}  # missing or damaged memo: it only costs re-hashing
        return data if isinstance(data, dict) else {}

    # -- entries --------------------------------------------------------------------
    def path_of(self, key: str) -> Path:
        fingerprint, digest = key.split("/")
        return self.root / fingerprint / f"{digest}{ENTRY_SUFFIX}"

    def __contains__(self, key: str) -> bool:
        """Whether a readable entry exists; only its header is read (a damaged one is removed)."""
        path = self.path_of(key)
        try:
            with safe_open(str(path), framework="numpy") as fh:
                _check_names(path, fh)
        except FileNotFoundError:
            return False
        except (OSError, SafetensorError, ValueError):
            path.unlink(missing_ok=True)
            return False
        return True

    def get(self, key: str) -> ClipFeatures | None:
        """The stored features, or ``None`` when missing or unreadable (then removed)."""
        path = self.path_of(key)
        try:
            return _read_entry(path)
        except FileNotFoundError:
            return None
        except (OSError, SafetensorError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # corrupt: drop it so it is recomputed
            return None

    def put(self, key: str, features: ClipFeatures) -> None:
        """Store atomically: a temporary file in the same folder renamed into place."""
        arrays = {
            name: np.ascontiguousarray(value)
            for name in _ARRAYS
            if (value := getattr(features, name)) is not None
        }
        metadata = {"arrays": ",".join(arrays)}
        if features.face_fraction is not None:
            metadata["face_fraction"] = repr(float(features.face_fraction))
        atomic_write_bytes(self.path_of(key), save(arrays, metadata=metadata))


def _read_entry(path: Path) -> ClipFeatures:
    with safe_open(str(path), framework="numpy") as fh:
        metadata = _check_names(path, fh)
        stored = fh.keys()
        arrays = {name: fh.get_tensor(name) for name in stored}
    for name, value in arrays.items():
        dtype, ndim = _ARRAYS[name]
        if value.dtype != dtype or value.ndim != ndim:
            raise ValueError(f"{path}: {name} is {value.dtype} {value.shape}")
    fraction = metadata.get("face_fraction")
    return ClipFeatures(**arrays, face_fraction=float(fraction) if fraction else None)


def _check_names(path: Path, fh) -> dict[str, str]:
    """The entry's metadata, after checking it names exactly the arrays stored."""
    metadata = fh.metadata() or {}
    names = {n for n in metadata.get("arrays", "").split(",") if n}
    if set(fh.keys()) != names or not names <= set(_ARRAYS):
        raise ValueError(f"{path}: arrays {sorted(fh.keys())} do not match its metadata")
    return metadata
