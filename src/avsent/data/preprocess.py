"""Run the front-ends once per clip, in parallel worker processes, into the feature cache.

Clips already in the cache are skipped; a clip that cannot be used is reported at the end
and never stops the run. ``shard=(i, n)`` takes the clips whose stable hash falls in share
``i`` of ``n``, so ``n`` machines with the same corpus tree can split it between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from avsent.contracts import Clip
from avsent.data.cache import FeatureCache
from avsent.data.features import FeatureExtractor, frontend_fingerprint
from avsent.errors import AvsentError, ConfigError, MediaError
from avsent.registry import ENTRY_POINT_GROUP

#: thread-pool settings each worker starts with: one process per core, one thread each
_SINGLE_THREAD_ENV = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    )
}

#: imported once by the forkserver, so each worker starts without importing them again
_PRELOAD = ("avsent.data.preprocess", "librosa", "cv2", "av")


@attrs.define
class PreprocessResult:
    """Keys of every usable clip (computed now or found in the cache) and the failures."""

    features: dict[Path, str] = attrs.Factory(dict)
    failed: list[tuple[Path, str]] = attrs.Factory(list)
    computed: int = 0  #: clips whose features were extracted in this run
    reused: int = 0  #: clips already in the cache
    seconds: float = 0.0  #: wall time spent extracting (0 when everything was cached)
    #: time the workers spent on clips, summed: seconds per clip per core, without start-up
    busy_seconds: float = 0.0


def shard_index(path: Path, root: Path, num_shards: int) -> int:
    """Which shard a clip belongs to: a hash of its path relative to the corpus root."""
    relative = Path(os.path.relpath(path, root)).as_posix()
    digest = hashlib.sha256(relative.encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def select_shard(paths: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """The paths in shard ``(index, count)``; all of them when ``shard`` is None."""
    if shard is None or not paths:
        return paths
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError("shard", f"expected index in 0..count-1 and count >= 1, got {shard}")
    root = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    return [p for p in paths if shard_index(p.resolve(), root, count) == index]


def preprocess(
    clips: Iterable[Clip | str | Path],
    config: Any,
    *,
    workers: int,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    cache: FeatureCache | None = None,
) -> PreprocessResult:
    """Extract and cache the features of ``clips`` under ``config``'s front-ends.

    ``workers=0`` runs in this process (useful for debugging); ``cache`` defaults to
    ``config.data.cache_dir``.
    """
    paths = list(dict.fromkeys(Path(c.path if isinstance(c, Clip) else c) for c in clips))
    paths = select_shard(paths, shard)
    cache = cache or FeatureCache(config.data.cache_dir)
    cache.remove_stale_temporaries()
    fingerprint = frontend_fingerprint(config)
    result = PreprocessResult()
    keys: dict[Path, str] = {}
    problems: dict[Path, str] = {}
    todo: dict[str, list[Path]] = {}  # key → paths with that content (extracted once)
    with _progress_bar(progress) as bar:
        hashing = bar.add_task("Hashing files", total=len(paths))
        for path in paths:
            try:
                key = cache.key_for(path, fingerprint)
            except OSError as exc:
                problems[path] = f"cannot read the file ({exc.strerror or exc})"
            else:
                if key in todo or key not in cache:
                    todo.setdefault(key, []).append(path)
                else:
                    keys[path] = key
                    result.reused += 1
            bar.advance(hashing)
        cache.save_index()

        start = time.perf_counter()
        extracting = bar.add_task("Extracting features", total=len(todo))
        jobs = [(same[0], key) for key, same in todo.items()]
        for _, key, problem, busy in _run(jobs, config, cache.root, workers):
            result.busy_seconds += busy
            for path in todo[key]:
                if problem is None:
                    keys[path] = key
                    result.computed += 1
                else:
                    problems[path] = problem
            bar.advance(extracting)
        result.seconds = time.perf_counter() - start if todo else 0.0
    # report in the order the clips were given, whatever order the workers finished in
    result.features = {p: keys[p] for p in paths if p in keys}
    result.failed = [(p, problems[p]) for p in paths if p in problems]
    if progress:
        _summarise(result)
    return result


def _run(
    todo: list[tuple[Path, str]], config: Any, root: Path, workers: int
) -> Iterator[tuple[Path, str, str | None]]:
    """(path, key, problem or None, seconds spent) per clip, in completion order."""
    if not todo:
        return
    if workers == 0:
        extractor = FeatureExtractor(config)
        cache = FeatureCache(root)
        for path, key in todo:
            yield path, key, *_extract_into(extractor, cache, path, key)
        return
    context = _worker_context()
    with (
        _single_thread_env(),
        ProcessPoolExecutor(
            max_workers=min(workers, len(todo)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(config, str(root)),
        ) as pool,
    ):
        futures = {pool.submit(_work, path, key): (path, key) for path, key in todo}
        for future in as_completed(futures):
            path, key = futures[future]
            try:
                problem, busy = future.result()
            except BrokenProcessPool:
                problem = "a worker process died (crash or out of memory) while extracting"
                busy = 0.0
            yield path, key, problem, busy


def _worker_context() -> multiprocessing.context.BaseContext:
    """Forkserver where available: workers fork from a clean process that has imported the
    heavy libraries once, instead of each importing them again (spawn), and never inherit
    this process's thread pools (fork)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    plugins = [ep.module for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    context.set_forkserver_preload([*_PRELOAD, *plugins])  # a failing import is skipped
    return context


@contextlib.contextmanager
def _single_thread_env() -> Iterator[None]:
    """Workers inherit this environment, so native libraries start with one thread."""
    saved = {name: os.environ.get(name) for name in _SINGLE_THREAD_ENV}
    os.environ.update(_SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_worker: tuple[FeatureExtractor, FeatureCache] | None = None
_worker_error: str | None = None


def _init_worker(config: Any, root: str) -> None:
    global _worker, _worker_error
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        _worker = (FeatureExtractor(config), FeatureCache(root))
    except AvsentError as exc:  # e.g. missing weights: a problem of the run, not of a clip
        _worker_error = str(exc)


def _work(path: Path, key: str) -> tuple[str | None, float]:
    if _worker is None:
        # re-raised in the parent, which stops the run; plain AvsentError pickles cleanly
        raise AvsentError(_worker_error or "feature worker was not initialised")
    return _extract_into(*_worker, path, key)


def _extract_into(
    extractor: FeatureExtractor, cache: FeatureCache, path: Path, key: str
) -> tuple[str | None, float]:
    """Extract and store one clip → (the problem as text when it cannot be used, seconds)."""
    start = time.perf_counter()
    problem = None
    try:
        cache.put(key, extractor.extract(path))
    except MediaError as exc:
        problem = exc.problem
    except AvsentError as exc:
        problem = str(exc)
    except Exception as exc:  # one odd file must not end a long run; report it instead
        problem = f"unexpected {type(exc).__name__}: {exc}"
    return problem, time.perf_counter() - start


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _summarise(result: PreprocessResult) -> None:
    console = Console(stderr=True)
    rate = f", {result.computed / result.seconds:.2f} clips/s" if result.seconds else ""
    console.print(
        f"features: {result.computed} extracted{rate}, {result.reused} from the cache, "
        f"{len(result.failed)} failed"
    )
    for path, problem in result.failed:
        console.print(f"  [red]skipped[/red] {escape(f'{path}: {problem}')}", highlight=False)
