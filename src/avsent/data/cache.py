"""A content-addressed store of clip features: ``root/<fingerprint>/<sha256>.safetensors``.

The key is the file's content hash plus the front-end fingerprint, so renaming or moving
a corpus keeps its features, while editing a clip or a front-end setting recomputes only
what changed. Entries are written to a temporary file and renamed into place, so a killed
run never leaves a half-written entry. Each entry carries a blake2b checksum of its arrays,
checked with their shapes on every read, and the facts of the features it was written for
(:class:`EntrySpec`: the audio front-end's bands and frame rate, the video's frames, crop
size, channels and geometry size): a damaged entry (flipped bits, a tampered file, a shape
the front-ends do not produce) or one written for other features than the front-ends now
describe is deleted and reads as missing, so it is recomputed instead of being served. A
clip being extracted is claimed (:meth:`FeatureCache.claim`), so two runs on one cache
extract it once.

Where the store lives is :func:`cache_dir`'s decision alone: ``data.cache_dir`` when set,
else ``$AVSENT_CACHE_DIR``, else one folder per user under the user's cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from avsent.config import atomic_write_bytes, atomic_write_text
from avsent.contracts import Band, FeatureSpec
from avsent.data.features import ClipFeatures
from avsent.errors import CacheLocationError

ENTRY_SUFFIX = ".safetensors"
HASH_INDEX = "content-hashes.json"
_CHUNK = 1 << 20
#: a temporary file this old belongs to a run that was killed, not to one still writing
STALE_TEMPORARY_S = 3600.0
CLAIM_SUFFIX = ".claim"
#: a claim whose holder cannot be asked (it is on another machine) is taken over after this
CLAIM_STALE_S = STALE_TEMPORARY_S
#: array name → (dtypes, number of dimensions) an entry must have; video is uint8 face crops
#: or float32 face embeddings (``faces.embedding``)
_ARRAYS = {
    "audio": ((np.float32,), 2),
    "video": ((np.uint8, np.float32), 4),
    "geometry": ((np.float32,), 2),
}
#: what :meth:`FeatureCache.problem` answers for an entry that is not there
MISSING = "missing"
#: the folder of the feature cache when ``data.cache_dir`` is not set
CACHE_DIR_ENV = "AVSENT_CACHE_DIR"


def cache_dir(setting: str | Path = "") -> Path:
    """The feature cache's folder: ``setting`` (``data.cache_dir``) unless it is ``""``, else
    ``$AVSENT_CACHE_DIR``, else ``avsent/features`` in ``$XDG_CACHE_HOME`` (``~/.cache``).

    The default is per user, not per working folder, so features computed once are found
    from anywhere, and it is not written into a run's config, so a run copied to another
    machine finds that machine's cache."""
    chosen = str(setting) or os.environ.get(CACHE_DIR_ENV, "")
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "avsent" / "features"


@attrs.frozen
class EntrySpec:
    """What the configured front-ends produce (:meth:`of`): the arrays an entry must have,
    and the facts stored with every entry and checkpoint (:meth:`facts`), so that features
    of another layout are refused rather than read as these.

    ``None`` means the recipe does not use that modality (the entry must not hold it).
    """

    audio: FeatureSpec | None  #: the audio front-end's rows: F of audio [F, T] is its rows
    video_size: int | None  #: S of video [T, S, S, C]
    video_channels: int | None = None  #: C of video
    geometry_dim: int | None = None  #: G of geometry [T, G], when landmarks are on
    video_frames: int | None = None  #: frames sampled per clip (``faces.num_frames``)

    @property
    def audio_rows(self) -> int | None:
        return None if self.audio is None else self.audio.rows

    @classmethod
    def of(cls, config: Any) -> EntrySpec:
        """The features ``config``'s front-ends produce, from the config alone (the audio
        front-end's ``describe``, the face settings): nothing is built."""
        from avsent.data.features import uses_audio, uses_video
        from avsent.model import audio_feature_spec, inputs_for

        inputs = inputs_for(config)
        video = uses_video(config)
        return cls(
            audio=audio_feature_spec(config) if uses_audio(config) else None,
            video_size=inputs.video_size if video else None,
            video_channels=inputs.video_channels if video else None,
            geometry_dim=inputs.geometry_dim if video else None,
            video_frames=inputs.video_frames if video else None,
        )

    def facts(self) -> dict[str, Any]:
        """The JSON-able description stored with entries and checkpoints."""
        audio = None
        if self.audio is not None:
            bands = [_band_text(band) for band in self.audio.bands]
            audio = {"bands": bands, "frames_per_second": self.audio.frames_per_second}
        video = None
        if self.video_size is not None:
            video = {
                "frames": self.video_frames,
                "size": self.video_size,
                "channels": self.video_channels,
                "geometry": self.geometry_dim,
            }
        return {"audio": audio, "video": video}

    def difference(self, stored: Any) -> str:
        """How the ``stored`` facts differ from these ("" when they agree), fact by fact."""
        if not isinstance(stored, dict):
            return f"the stored feature spec is {stored!r}, not a table"
        then, now = _flatten(stored), _flatten(self.facts())
        return "; ".join(
            f"{name} {_fact_text(then.get(name))} stored, {_fact_text(now.get(name))} now"
            for name in sorted(then.keys() | now.keys())
            if then.get(name) != now.get(name)
        )


def _band_text(band: Band) -> str:
    """``mel 0:128 frequency dB``: a band as the stored facts (and messages) show it."""
    marks = [word for word, on in (("frequency", band.frequency), ("dB", band.db)) if on]
    return " ".join([band.name, f"{band.start}:{band.stop}", *marks])


def _flatten(facts: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in facts.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _fact_text(value: Any) -> str:
    if value is None:
        return "none"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


class DamagedEntry(ValueError):
    """An entry's bytes or shapes are not what ``put`` wrote; the message says how."""


def content_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks so big videos never sit in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureCache:
    """Features by key ``"<fingerprint>/<content hash>"`` under ``root`` (``""``: the
    default folder, see :func:`cache_dir`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = cache_dir(root)
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        if not existing.is_dir():  # else the first write fails with a bare FileExistsError
            raise CacheLocationError(
                f"{self.root}: the feature cache (data.cache_dir) must be a folder, "
                f"but {existing} is a file"
            )
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
        """Whether a sound entry exists (read and checked in full; a damaged one is deleted)."""
        return self.problem(key) is None

    def problem(self, key: str, spec: EntrySpec | None = None) -> str | None:
        """``None`` for a sound entry, else why it cannot be served: :data:`MISSING`, or the
        damage found (checksum, shapes, ``spec``), after deleting it so it is recomputed."""
        try:
            self._read(key, spec)
        except FileNotFoundError:
            return MISSING
        except DamagedEntry as exc:
            return str(exc)
        return None

    def get(self, key: str) -> ClipFeatures | None:
        """The stored features, or ``None`` when missing or damaged (then deleted)."""
        try:
            return self._read(key)
        except (FileNotFoundError, DamagedEntry):
            return None

    def put(self, key: str, features: ClipFeatures, spec: EntrySpec | None = None) -> None:
        """Store atomically: a temporary file in the same folder renamed into place, with
        the facts of ``spec`` (the features it was extracted for) when given."""
        arrays = {
            name: np.ascontiguousarray(value)
            for name in _ARRAYS
            if (value := getattr(features, name)) is not None
        }
        metadata = {"arrays": ",".join(arrays)}
        if features.face_fraction is not None:
            metadata["face_fraction"] = repr(float(features.face_fraction))
        if spec is not None:
            metadata["spec"] = json.dumps(spec.facts(), sort_keys=True)
        metadata["blake2b"] = _checksum(arrays, _checked_metadata(metadata))
        atomic_write_bytes(self.path_of(key), save(arrays, metadata=metadata))

    @contextlib.contextmanager
    def claim(self, key: str, poll_s: float = 0.2) -> Iterator[bool]:
        """Hold ``key`` while extracting it, so that a second run on the same cache waits
        for the entry instead of extracting the clip again.

        Yields ``True`` when the caller should extract (it holds the claim), ``False``
        when another process stored a sound entry meanwhile. A claim whose holder died
        (same machine: its pid is gone; another machine: older than
        :data:`CLAIM_STALE_S`) is taken over, so a killed run never blocks the next.
        """
        path = self.path_of(key).with_suffix(CLAIM_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        while not _take_claim(path):
            if self._has_sound(key):
                yield False
                return
            if _holder_gone(path):
                path.unlink(missing_ok=True)
            else:
                time.sleep(poll_s)
        try:
            yield not self._has_sound(key)
        finally:
            path.unlink(missing_ok=True)

    def _has_sound(self, key: str) -> bool:
        return self.path_of(key).exists() and self.problem(key) is None

    def _read(self, key: str, spec: EntrySpec | None = None) -> ClipFeatures:
        """The checked entry; a damaged one is deleted and raises :class:`DamagedEntry`."""
        path = self.path_of(key)
        try:
            return _read_entry(path, spec)
        except FileNotFoundError:
            raise
        except (OSError, SafetensorError, ValueError, KeyError) as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, DamagedEntry):
                raise
            raise DamagedEntry(f"unreadable: {exc}") from exc


def _take_claim(path: Path) -> bool:
    """Create the claim file, naming this process; ``False`` when it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def _holder_gone(path: Path) -> bool:
    """Whether the process named in a claim file can no longer finish its work."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released just now: the next attempt takes it
    host, _, pid = text.strip().partition(" ")
    if host != socket.gethostname() or not pid.isdigit():  # elsewhere, or still being written
        return age > CLAIM_STALE_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def _checked_metadata(metadata: dict[str, str]) -> str:
    """The metadata the checksum covers: the face fraction, then the stored spec (an entry
    written before specs were stored has none, and keeps its checksum)."""
    return metadata.get("face_fraction", "") + metadata.get("spec", "")


def _checksum(arrays: dict[str, np.ndarray], metadata: str) -> str:
    """blake2b of every array's name, dtype, shape and bytes, and of ``metadata``."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        value = arrays[name]
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.data)
    digest.update(metadata.encode())
    return digest.hexdigest()


def _read_entry(path: Path, spec: EntrySpec | None) -> ClipFeatures:
    with safe_open(str(path), framework="numpy") as fh:
        metadata = _check_names(fh)
        names = fh.keys()
        arrays = {name: fh.get_tensor(name) for name in names}
    fraction = metadata.get("face_fraction")
    checksum = metadata.get("blake2b")
    if checksum is None:
        raise DamagedEntry("no checksum (written before avsent checked entries)")
    if checksum != _checksum(arrays, _checked_metadata(metadata)):
        raise DamagedEntry("checksum mismatch")
    stored = metadata.get("spec")
    if spec is not None and stored is not None:  # an entry without one: unknown, shapes decide
        difference = spec.difference(json.loads(stored))
        if difference:
            raise DamagedEntry(f"written for other features: {difference}")
    _check_shapes(arrays, spec)
    return ClipFeatures(**arrays, face_fraction=float(fraction) if fraction else None)


def _check_shapes(arrays: dict[str, np.ndarray], spec: EntrySpec | None) -> None:
    """Raise DamagedEntry unless the arrays have the layout :class:`ClipFeatures` documents
    and, given a ``spec``, the sizes the front-ends produce."""
    for name, value in arrays.items():
        dtypes, ndim = _ARRAYS[name]
        if value.dtype not in dtypes or value.ndim != ndim:
            kinds = " or ".join(np.dtype(d).name for d in dtypes)
            raise DamagedEntry(f"{name} is {value.dtype} {value.shape}, expected {ndim}-D {kinds}")
    video, geometry = arrays.get("video"), arrays.get("geometry")
    if video is not None and video.dtype == np.float32 and video.shape[1:3] != (1, 1):
        raise DamagedEntry(f"video embeddings are {video.shape}, expected [T, 1, 1, D]")
    if (
        video is not None
        and video.dtype == np.uint8
        and (video.shape[1] != video.shape[2] or video.shape[3] not in (1, 3))
    ):
        raise DamagedEntry(f"video crops are {video.shape}, expected [T, S, S, 1 or 3]")
    if geometry is not None and (video is None or len(geometry) != len(video)):
        frames = "no video" if video is None else f"{len(video)} video frames"
        raise DamagedEntry(f"geometry has {len(geometry)} frames for {frames}")
    if spec is None:
        return
    expected = {
        "audio": None if spec.audio_rows is None else (0, spec.audio_rows),
        "video": None if spec.video_size is None else (1, spec.video_size),
    }
    for name, want in expected.items():
        value = arrays.get(name)
        if (value is None) != (want is None):
            raise DamagedEntry(f"{name} is {'missing' if value is None else 'not expected'}")
        if want is not None and value.shape[want[0]] != want[1]:
            raise DamagedEntry(f"{name} is {value.shape}, the front-end gives size {want[1]}")
    if video is not None and spec.video_channels and video.shape[3] != spec.video_channels:
        raise DamagedEntry(f"video has {video.shape[3]} channels, expected {spec.video_channels}")
    if spec.geometry_dim and geometry is not None and geometry.shape[1] != spec.geometry_dim:
        raise DamagedEntry(f"geometry is {geometry.shape}, expected [T, {spec.geometry_dim}]")


def _check_names(fh) -> dict[str, str]:
    """The entry's metadata, after checking it names exactly the arrays stored."""
    metadata = fh.metadata() or {}
    names = {n for n in metadata.get("arrays", "").split(",") if n}
    if set(fh.keys()) != names or not names <= set(_ARRAYS):
        raise DamagedEntry(f"arrays {sorted(fh.keys())} do not match its metadata")
    return metadata
