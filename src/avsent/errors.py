"""Errors a user can act on. Each names the thing at fault and what was expected."""

from __future__ import annotations

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
    """A component name is unknown, or two plugins registered the same one."""


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
