"""A run's data: dataset plugin → clips → split → feature cache → datasets.

Preprocessing runs once (on rank 0 under ``torchrun``; the others receive its result), so
clips that cannot be used are reported once and left out of every split part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
from rich.console import Console

from avsent.config import NONE
from avsent.contracts import Clip, DatasetSource
from avsent.data.cache import FeatureCache
from avsent.data.loader import AudioNorm, ClipDataset, speaker_audio_norms
from avsent.data.manifest import validate_clips
from avsent.data.preprocess import preprocess
from avsent.data.splits import Split, make_split
from avsent.errors import AvsentError, ConfigError
from avsent.registry import get_registry
from avsent.training import distributed
from avsent.training.distributed import DistContext

SPLIT_FILE = "split.json"
PARTS = ("train", "val", "test")


class DataError(AvsentError):
    """The data does not fit the run: no usable training clip, or a changed clip list."""


@attrs.define
class RunData:
    """Everything the trainer and the final evaluation read."""

    class_names: tuple[str, ...]
    clips: list[Clip]
    split: Split
    datasets: dict[str, ClipDataset]  #: "train" / "val" / "test"; parts may be empty
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


def speaker_norms(
    config: Any, cache: FeatureCache, clips: list[Clip], keys: dict[str, str]
) -> dict[str, AudioNorm] | None:
    """{path: that clip's speaker's audio statistics} when ``data.speaker_norm`` asks for it."""
    if not config.data.speaker_norm or config.audio.name == NONE:
        return None
    nameless = [c.path for c in clips if not c.speaker]
    if nameless:
        raise ConfigError(
            "data.speaker_norm", f"needs a speaker for every clip; {nameless[0]} has none"
        )
    paths = [str(c.path) for c in clips]
    found = speaker_audio_norms(cache, [keys[p] for p in paths], [c.speaker for c in clips])
    return dict(zip(paths, found, strict=True))


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
        split = Split.load(split_path)
        if not split.matches(clips):
            raise DataError(
                f"{split_path}: the dataset's clips changed since this run was split; "
                "train into a new run folder"
            )
    else:
        split = make_split(clips, config.data.split, config.train.seed)
        if ctx.is_main:
            split_path.parent.mkdir(parents=True, exist_ok=True)
            split.save(split_path)
    keys, failed = cache_keys(clips, config, ctx, progress=progress and ctx.is_main)
    if failed and ctx.is_main and not progress:  # with progress, preprocess lists them itself
        for path, problem in failed:
            console.print(
                f"skipped {path}: {problem}", markup=False, highlight=False, soft_wrap=True
            )
    cache = FeatureCache(config.data.cache_dir)
    index = {name: i for i, name in enumerate(class_names)}
    norms = speaker_norms(config, cache, [c for c in clips if str(c.path) in keys], keys)
    datasets, labels = {}, {}
    for part in PARTS:
        usable = [clips[i] for i in getattr(split, part) if str(clips[i].path) in keys]
        items = [(keys[str(c.path)], index[c.label]) for c in usable]
        labels[part] = np.array([label for _, label in items], dtype=np.int64)
        datasets[part] = ClipDataset(
            items,
            cache,
            train=part == "train",
            max_audio_frames=config.train.max_audio_frames if part == "train" else None,
            audio_norms=[norms[str(c.path)] for c in usable] if norms is not None else None,
        )
    if not len(datasets["train"]):
        raise DataError("no usable clips in the training split; see the skipped clips above")
    if ctx.is_main:
        sizes = ", ".join(f"{part} {len(datasets[part])}" for part in PARTS)
        console.print(f"data: {len(clips)} clips, {len(class_names)} classes; {sizes}")
    return RunData(class_names, clips, split, datasets, labels, failed)
