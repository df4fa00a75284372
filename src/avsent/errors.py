"""Errors a user can act on. Each names the thing at fault and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class AvsentError(Exception):
    """Base class: the CLI prints these as one clear message, without a traceback."""


class ConfigError(AvsentError):
    """A config value or field is wrong; the message starts with its dotted name."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class RegistryError(AvsentError):
    """A component name is unknown, two plugins registered the same one, or a plugin's
    factory failed when its component was built."""


class MediaError(AvsentError):
    """A media file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NoFaceError(MediaError):
    """No face was found anywhere in a clip and the config says that is an error."""


class WeightsUnavailableError(AvsentError):
    """Pretrained weights are needed but cannot be downloaded (no network)."""


class RunEnvironmentError(AvsentError):
    """The machine, not a clip, failed (a killed worker, a full disk, no permission).

    It stops the run instead of being counted as one skipped clip per file, since every
    clip after it would fail the same way and training would go on with what was left.
    """


class WorkerDiedError(RunEnvironmentError):
    """A preprocessing worker process died, e.g. killed by the OS when memory ran out."""


class CacheWriteError(RunEnvironmentError):
    """The feature cache cannot be written: disk full, no permission, read-only, ..."""


class CacheLocationError(AvsentError):
    """The feature cache's folder is not a folder (``data.cache_dir`` names a file)."""


class TooManyFailuresError(AvsentError):
    """Preprocessing lost more clips than ``data.max_failed_fraction`` allows, or a class."""


class RunLockedError(AvsentError):
    """Another live process is running in the same run folder."""


class CheckpointError(AvsentError):
    """A run folder or checkpoint file is missing or unreadable."""


class DatasetProblems(AvsentError):
    """A dataset cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = f"{len(self.problems)} problem" + ("s" if len(self.problems) != 1 else "")
        super().__init__(f"dataset {source}: {count}\n{lines}")


class DataError(AvsentError):
    """The data does not fit the run: no usable training clip, a changed clip list, or
    byte-identical copies with ``data.duplicates = "refuse"``."""


class SplitError(AvsentError):
    """The clips cannot be split as asked (no speakers, too few speakers, no train part)."""


class CacheMissError(AvsentError):
    """A clip's features are not in the cache (run ``avsent preprocess`` first)."""


class ExportError(AvsentError):
    """A model cannot be exported, or the exported file disagrees with the eager model."""


class ModalityMismatchError(AvsentError):
    """The recipe needs a stream (audio or video) that the dataset's clips do not have."""
