"""Evaluating a finished run: its own test split, another split, or another dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from avsent.data.cache import FeatureCache
from avsent.data.loader import ClipDataset
from avsent.data.preprocess import preprocess
from avsent.data.splits import Split, make_split
from avsent.errors import AvsentError
from avsent.training.checkpoint import load_model
from avsent.training.data import SPLIT_FILE, load_clips, speaker_norms
from avsent.training.distributed import DistContext, resolve_device
from avsent.training.loop import evaluate
from avsent.training.metrics import classification_report


def evaluate_run(
    run: str | Path,
    *,
    which: str = "best",
    part: str = "test",
    reconfigure: Callable[[Any], Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """A report of ``run``'s model on ``part`` (train/val/test/all) of its data.

    ``reconfigure`` maps the run's config to the one to read data with (e.g. another
    dataset); only its ``data`` and ``train`` sections are used — the model and its
    front-ends stay as trained. The run's saved split is used while the dataset is the same.
    """
    run = Path(run)
    device = resolve_device("auto")
    model, trained = load_model(run, which, device=device)
    config = trained
    if reconfigure is not None:
        new = reconfigure(trained)
        config = attrs.evolve(trained, data=new.data, train=new.train)
    clips, _ = load_clips(config)
    split_file = (run if run.is_dir() else run.parent.parent) / SPLIT_FILE
    if part == "all":
        chosen = clips
    elif config.data.dataset == trained.data.dataset and split_file.is_file():
        saved = Split.load(split_file)
        if not saved.matches(clips):
            raise AvsentError(
                f"{split_file}: the dataset's clips changed since this run was split; "
                "evaluate with --split all or on other --data"
            )
        chosen = saved.part(part)
    else:
        split = make_split(clips, config.data.split, config.train.seed)
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
    pre = preprocess(pool, config, workers=config.data.workers, progress=progress)
    index = {name: i for i, name in enumerate(model.class_names)}
    items = [(pre.features[c.path], index[c.label]) for c in chosen if c.path in pre.features]
    if not items:
        raise AvsentError(f"no usable clips in the {part!r} part of {config.data.dataset.name!r}")
    cache = FeatureCache(config.data.cache_dir)
    usable = [c for c in chosen if c.path in pre.features]
    pooled = [c for c in pool if c.path in pre.features]
    norms = speaker_norms(
        config, cache, pooled, {str(c.path): pre.features[c.path] for c in pooled}
    )
    dataset = ClipDataset(
        items,
        cache,
        train=False,
        audio_norms=[norms[str(c.path)] for c in usable] if norms is not None else None,
    )
    ev = evaluate(model, dataset, config=config, ctx=DistContext(device=device))
    return {
        "run": str(run),
        "recipe": trained.recipe,
        "dataset": config.data.dataset.name,
        "split": part,
        "checkpoint": which,
        **classification_report(ev.y_true, ev.y_pred, model.class_names),
        "loss": ev.loss,
        "skipped_clips": [[str(p), why] for p, why in pre.failed if p in {c.path for c in chosen}],
    }
