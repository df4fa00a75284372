"""Evaluating a finished run: its own test split, another split, or another dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from avsent.contracts import Clip
from avsent.data.splits import Split
from avsent.errors import AvsentError, ConfigError
from avsent.training.checkpoint import load_model
from avsent.training.data import (
    SPLIT_FILE,
    build_run_data,
    check_saved_split,
    load_clips,
    split_clips,
)
from avsent.training.distributed import DistContext, resolve_device
from avsent.training.loop import evaluate
from avsent.training.metrics import classification_report


def run_split(
    split_file: Path, clips: list[Clip], config: Any, trained: Any, ctx: DistContext
) -> Split:
    """The run's saved split when ``config`` reads the run's own data, else a fresh split.

    The data is the run's own when it comes from the same dataset plugin with the same
    settings, or with other settings (e.g. a new ``root``) but the clips ``split_file``
    lists, relative to their folder: the data moved. The run's own data must then fit the
    saved split, content included, or it is refused — splitting it afresh could put
    training clips in the test part.
    """
    if config.data.dataset.name != trained.data.dataset.name or not split_file.is_file():
        return split_clips(clips, config, ctx)
    split = Split.load(split_file)
    if config.data.dataset != trained.data.dataset and split.difference(clips) is not None:
        return split_clips(clips, config, ctx)  # other data the same plugin reads
    hint = (
        "point the run at its data (--set data.dataset.root=… or .path=…) or score every "
        "clip, training clips included, with --split all"
    )
    return check_saved_split(split, split_file, clips, config, ctx, hint)


def evaluate_run(
    run: str | Path,
    *,
    which: str = "best",
    part: str = "test",
    reconfigure: Callable[[Any], Any] | None = None,
    progress: bool = True,
    drop: str | None = None,
) -> dict[str, Any]:
    """A report of ``run``'s model on ``part`` (train/val/test/all) of its data.

    ``reconfigure`` maps the run's config to the one to read data with (e.g. another
    dataset); only its ``data`` and ``train`` sections are used — the model and its
    front-ends stay as trained. The run's saved split is used while the data is the run's
    own (:func:`run_split`), wherever it now lives.
    ``drop`` ("audio" or "video") scores the clips without that modality.
    """
    run = Path(run)
    model, trained = load_model(run, which)
    config = trained
    if reconfigure is not None:
        new = reconfigure(trained)
        config = attrs.evolve(trained, data=new.data, train=new.train)
    device = resolve_device(config.train.device)
    model.to(device)
    ctx = DistContext(device=device)
    clips, _ = load_clips(config)
    split_file = (run if run.is_dir() else run.parent.parent) / SPLIT_FILE
    split = None
    if part == "all":
        chosen = clips
    else:
        split = run_split(split_file, clips, config, trained, ctx)
        chosen = [clips[i] for i in getattr(split, part)]
    unknown = sorted({c.label for c in chosen} - set(model.class_names))
    if unknown:
        raise AvsentError(
            f"labels {unknown} are not classes of this model ({', '.join(model.class_names)}); "
            "map them with data.dataset.label_map"
        )
    # per-speaker statistics come from all of a speaker's clips, as in training
    speakers = {c.speaker for c in chosen}
    pool = [c for c in clips if c.speaker in speakers] if config.data.speaker_norm else chosen
    data = build_run_data(
        config,
        clips,
        model.class_names,
        {part: chosen},
        split=split,
        pool=pool,
        crop=(),
        ctx=ctx,
        progress=progress,
    )
    dataset = data.datasets[part]
    if not len(dataset):
        raise AvsentError(f"no usable clips in the {part!r} part of {config.data.dataset.name!r}")
    if drop is not None and not (model.uses_audio and model.uses_video):
        raise ConfigError(
            "--drop", f"needs an audio-visual model; {trained.recipe!r} has one modality"
        )
    ev = evaluate(model, dataset, config=config, ctx=ctx, drop=drop)
    chosen_paths = {str(c.path) for c in chosen}
    return {
        "run": str(run),
        "recipe": trained.recipe,
        "dataset": config.data.dataset.name,
        "split": part,
        "checkpoint": which,
        "dropped": drop,
        **classification_report(ev.y_true, ev.y_pred, model.class_names),
        "loss": ev.loss,
        "skipped_clips": [[p, why] for p, why in data.failed if p in chosen_paths],
    }
