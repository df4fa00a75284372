"""A run's data: dataset plugin → clips → split → feature cache → datasets.

The one builder of run data: training (:func:`prepare_data`) and ``avsent evaluate``
(:func:`~avsent.training.evaluation.evaluate_run`) both go through :func:`build_run_data`,
which preprocesses, pools per-speaker statistics and makes the datasets (training crop
included); ``avsent predict`` shares its batches and normalisation (``collate``,
:mod:`avsent.data.normalise`, :mod:`avsent.data.windows`). Clips are keyed by their cache
key throughout. Preprocessing runs once (on rank 0 under ``torchrun``; the others receive
its result), so clips that cannot be used are reported once and left out of every part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
from rich.console import Console

from avsent.contracts import Clip, DatasetSource
from avsent.data.cache import FeatureCache
from avsent.data.loader import ClipDataset
from avsent.data.manifest import validate_clips
from avsent.data.normalise import audio_modes, speaker_norms_for
from avsent.data.preprocess import preprocess
from avsent.data.splits import (
    Split,
    content_hashes,
    describe_duplicates,
    duplicate_groups,
    make_split,
)
from avsent.data.windows import crop_frames
from avsent.errors import DataError
from avsent.registry import get_registry
from avsent.training import distributed
from avsent.training.distributed import DistContext

SPLIT_FILE = "split.json"
PARTS = ("train", "val", "test")


@attrs.define
class RunData:
    """Everything the trainer, the final evaluation and ``avsent evaluate`` read."""

    class_names: tuple[str, ...]
    clips: list[Clip]
    split: Split | None  #: None when evaluating clips chosen without one (``--split all``)
    datasets: dict[str, ClipDataset]  #: e.g. "train" / "val" / "test"; parts may be empty
    labels: dict[str, np.ndarray]  #: class index per sample of each part
    failed: list[tuple[str, str]]  #: (path, problem) of clips left out


def dataset_source(config: Any) -> DatasetSource:
    """The configured dataset plugin's source of clips."""
    choice = config.data.dataset
    return get_registry().get("dataset", choice.name).build(choice.config)


def load_clips(config: Any) -> tuple[list[Clip], tuple[str, ...]]:
    """The dataset's clips and class names; raises DatasetProblems listing every problem."""
    source = dataset_source(config)
    clips = list(source.clips())
    class_names = tuple(source.class_names)
    validate_clips(clips, class_names, config.data.dataset.name)
    return clips, class_names


def cache_keys(
    clips: list[Clip],
    config: Any,
    ctx: DistContext,
    *,
    progress: bool,
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Preprocess on rank 0 → ({path: cache key}, [(path, problem)]) on every rank."""
    result = None
    if ctx.is_main:
        pre = preprocess(clips, config, workers=config.data.workers, progress=progress)
        result = {
            "keys": {str(p): k for p, k in pre.features.items()},
            "failed": [[str(p), problem] for p, problem in pre.failed],
        }
    result = distributed.broadcast_json(result, ctx)
    return result["keys"], [tuple(f) for f in result["failed"]]


def split_clips(
    clips: list[Clip], config: Any, ctx: DistContext, console: Console | None = None
) -> Split:
    """``data.split`` of ``clips``, with byte-identical copies kept in one part (or refused,
    by ``data.duplicates``); the copies are found by the feature cache's content hashes,
    which the split records so a later run can tell its clips apart from changed ones."""
    hashes = None
    if ctx.is_main:
        cache = FeatureCache(config.data.cache_dir)
        hashes = content_hashes(clips, cache.file_hash)
        cache.save_index()  # preprocessing reuses these hashes instead of reading files again
    hashes = distributed.broadcast_json(hashes, ctx)
    groups = duplicate_groups(hashes)
    if groups:
        message = describe_duplicates(clips, groups)
        if config.data.duplicates == "refuse":
            raise DataError(f'{message}; remove them or set data.duplicates = "group"')
        if ctx.is_main and console is not None:
            console.print(
                f"{message}; each kept in one split part",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    split = make_split(clips, config.data.split, config.train.seed, groups=groups)
    return attrs.evolve(split, hashes=tuple(hashes))


def build_run_data(
    config: Any,
    clips: list[Clip],
    class_names: tuple[str, ...],
    parts: dict[str, list[Clip]],
    *,
    split: Split | None = None,
    pool: list[Clip] | None = None,
    crop: tuple[str, ...] = ("train",),
    ctx: DistContext | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> RunData:
    """Preprocess ``pool`` (default ``clips``), then one dataset per part of its usable clips.

    Per-speaker statistics (``data.speaker_norm``) pool every usable clip of ``pool``, so
    evaluation passes all of a speaker's clips, as training does. The parts named in
    ``crop`` get the random training crop. With a ``console``, clips skipped without a
    progress display and a one-line summary are printed there.
    """
    ctx = ctx or DistContext()
    pool = clips if pool is None else pool
    keys, failed = cache_keys(pool, config, ctx, progress=progress and ctx.is_main)
    if failed and ctx.is_main and console is not None and not progress:
        for path, problem in failed:  # with progress, preprocess lists them itself
            console.print(
                f"skipped {path}: {problem}", markup=False, highlight=False, soft_wrap=True
            )
    cache = FeatureCache(config.data.cache_dir)
    norms = speaker_norms_for(config, cache, [c for c in pool if str(c.path) in keys], keys)
    index = {name: i for i, name in enumerate(class_names)}
    datasets, labels = {}, {}
    for part, chosen in parts.items():
        usable = [c for c in chosen if str(c.path) in keys]
        items = [(keys[str(c.path)], index[c.label]) for c in usable]
        labels[part] = np.array([label for _, label in items], dtype=np.int64)
        datasets[part] = ClipDataset(
            items,
            cache,
            train=part in crop,
            max_audio_frames=crop_frames(config) if part in crop else None,
            audio_norms=[norms[str(c.path)] for c in usable] if norms is not None else None,
            utterance_norm=config.data.utterance_norm,
        )
    if ctx.is_main and console is not None:
        sizes = ", ".join(f"{part} {len(datasets[part])}" for part in parts)
        modes = " → ".join(audio_modes(config))
        console.print(
            f"data: {len(clips)} clips, {len(class_names)} classes; split {split.method} "
            f"fold {split.fold}: {sizes}" + (f"; audio standardised {modes}" if modes else ""),
            markup=False,
            highlight=False,
        )
        for note in split.notes:
            console.print(f"split: {note}", markup=False, highlight=False)
    return RunData(class_names, clips, split, datasets, labels, failed)


def prepare_data(
    config: Any,
    run_dir: str | Path,
    ctx: DistContext | None = None,
    *,
    console: Console | None = None,
    progress: bool = True,
) -> RunData:
    """Clips, split (reused from ``run_dir/split.json`` when present) and cached datasets."""
    ctx = ctx or DistContext()
    console = console or Console()
    # rank 0 first: a dataset may build itself on first use (the synthetic one does)
    if ctx.is_main:
        clips, class_names = load_clips(config)
    distributed.barrier(ctx)
    if not ctx.is_main:
        clips, class_names = load_clips(config)
    split_path = Path(run_dir) / SPLIT_FILE
    if split_path.is_file():
        hint = "point the run at its data (--set data.dataset.…) or train into a new run folder"
        split = check_saved_split(Split.load(split_path), split_path, clips, config, ctx, hint)
    else:
        split = split_clips(clips, config, ctx, console)
        if ctx.is_main:
            split_path.parent.mkdir(parents=True, exist_ok=True)
            split.save(split_path)
    data = build_run_data(
        config,
        clips,
        class_names,
        {part: [clips[i] for i in getattr(split, part)] for part in PARTS},
        split=split,
        ctx=ctx,
        console=console,
        progress=progress,
    )
    if not len(data.datasets["train"]):
        raise DataError("no usable clips in the training split; see the skipped clips above")
    return data


def check_saved_split(
    split: Split, path: Path, clips: list[Clip], config: Any, ctx: DistContext, hint: str
) -> Split:
    """``split`` (read from ``path``), refused unless ``clips`` are the ones it was made of:
    the same files relative to the data's folder (the data may have moved), labels and
    content (hashed on rank 0 through the feature cache's memo)."""
    problem = None
    if ctx.is_main:
        cache = FeatureCache(config.data.cache_dir)
        problem = split.difference(clips, cache.file_hash)
        cache.save_index()
    problem = distributed.broadcast_json(problem, ctx)
    if problem is not None:
        raise DataError(
            f"{path}: the dataset's clips differ from those this run was split on: "
            f"{problem}; {hint}"
        )
    return split
