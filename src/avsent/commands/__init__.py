"""The built-in commands: ``train``, ``evaluate``, ``predict``, ``preprocess``, ``reproduce``,
``report``, ``export`` and ``tune``."""

from __future__ import annotations

from typing import Any


def register_builtin_commands(cli: Any) -> None:
    """Add the built-in commands to the ``avsent`` click group."""
    from avsent.commands.evaluate import evaluate
    from avsent.commands.export import export
    from avsent.commands.predict import predict
    from avsent.commands.preprocess import preprocess
    from avsent.commands.report import report
    from avsent.commands.reproduce import reproduce
    from avsent.commands.train import train
    from avsent.commands.tune import tune

    for command in (train, evaluate, predict, preprocess, reproduce, report, export, tune):
        cli.add_command(command)
