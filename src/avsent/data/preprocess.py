"""Run the front-ends once per clip, in parallel worker processes, into the feature cache.

Clips already in the cache (and sound: checksum and shapes) are skipped; a clip that cannot
be used is reported at the end and skipped. The machine failing is another matter: a killed
worker, a full disk or a permission error stops the run (:class:`RunEnvironmentError`), and
so does losing more than ``data.max_failed_fraction`` of the clips, or every clip of a class.
``shard=(i, n)`` takes the clips whose stable hash falls in share ``i`` of ``n``, so ``n``
machines with the same corpus tree can split it between them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata
from multiprocessing.connection import Connection
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
from avsent.data.cache import MISSING, EntrySpec, FeatureCache
from avsent.data.features import FeatureExtractor, frontend_fingerprint
from avsent.errors import (
    AvsentError,
    CacheWriteError,
    ConfigError,
    MediaError,
    TooManyFailuresError,
    WorkerDiedError,
)
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

#: why a cache write failed, for the errno values a user can do something about
_WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
#: failed clips named in a TooManyFailuresError (all of them are listed above it)
_LISTED_FAILURES = 10


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
    clips = list(clips)
    labels = {Path(c.path): c.label for c in clips if isinstance(c, Clip) and c.label}
    paths = list(dict.fromkeys(Path(c.path if isinstance(c, Clip) else c) for c in clips))
    paths = select_shard(paths, shard)
    cache = cache or FeatureCache(config.data.cache_dir)
    cache.remove_stale_temporaries()
    fingerprint = frontend_fingerprint(config)
    spec = EntrySpec.of(config)
    result = PreprocessResult()
    keys: dict[Path, str] = {}
    problems: dict[Path, str] = {}
    todo: dict[str, list[Path]] = {}  # key → paths with that content (extracted once)
    sound: set[str] = set()  # keys whose entry was checked in this run
    console = Console(stderr=True)
    with _progress_bar(progress) as bar:
        hashing = bar.add_task("Hashing files", total=len(paths))
        for path in paths:
            try:
                key = cache.key_for(path, fingerprint)
            except OSError as exc:
                problems[path] = f"cannot read the file ({exc.strerror or exc})"
                bar.advance(hashing)
                continue
            damage = None if key in todo or key in sound else cache.problem(key, spec)
            if key in todo or damage is not None:
                todo.setdefault(key, []).append(path)
                if damage not in (None, MISSING):
                    message = f"cache entry for {path} cannot be used ({damage}); recomputing"
                    console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                sound.add(key)
                keys[path] = key
                result.reused += 1
            bar.advance(hashing)
        try:
            cache.save_index()
        except OSError as exc:
            raise _cache_write_error(exc, cache.root, None) from None

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
    check_failures(result, labels, config.data.max_failed_fraction)
    return result


def check_failures(result: PreprocessResult, labels: dict[Path, str], max_fraction: float) -> None:
    """Stop when more than ``max_fraction`` of the clips failed, or every clip of a class:
    training on what is left would report figures for another dataset than the one asked."""
    if not result.failed:
        return
    total = len(result.features) + len(result.failed)
    lost = {labels[p] for p, _ in result.failed if p in labels}
    lost -= {labels[p] for p in result.features if p in labels}
    reasons = []
    if len(result.failed) > max_fraction * total:
        reasons.append(
            f"{len(result.failed)} of {total} clips failed, more than "
            f"data.max_failed_fraction = {max_fraction:g}"
        )
    if lost:
        reasons.append(f"every clip of class {', '.join(map(repr, sorted(lost)))} failed")
    if not reasons:
        return
    listed = "; ".join(f"{p}: {why}" for p, why in result.failed[:_LISTED_FAILURES])
    more = len(result.failed) - _LISTED_FAILURES
    raise TooManyFailuresError(
        f"preprocessing stopped: {' and '.join(reasons)}: {listed}"
        + (f"; and {more} more" if more > 0 else "")
    )


def _run(
    todo: list[tuple[Path, str]], config: Any, root: Path, workers: int
) -> Iterator[tuple[Path, str, str | None, float]]:
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
    # the workers block reading the lifeline; only this process can write it, so they see
    # end-of-file, and exit, when it dies — even by SIGKILL, which runs no cleanup here
    lifeline, lifeline_end = context.Pipe(duplex=False)
    started = context.SimpleQueue()  # each clip's path as a worker begins it
    with (
        contextlib.closing(lifeline),
        contextlib.closing(lifeline_end),
        _single_thread_env(),
        ProcessPoolExecutor(
            max_workers=min(workers, len(todo)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(config, str(root), lifeline, started),
        ) as pool,
    ):
        futures = {pool.submit(_work, path, key): (path, key) for path, key in todo}
        begun: set[str] = set()
        finished: set[str] = set()
        try:
            for future in as_completed(futures):
                path, key = futures[future]
                while not started.empty():  # drained as we go: a full pipe would block them
                    begun.add(started.get())
                try:
                    problem, busy = future.result()
                except BrokenProcessPool:
                    unfinished = sorted(begun - finished) or [str(path)]
                    raise WorkerDiedError(
                        "a preprocessing worker died (killed by the OS? out of memory?) "
                        f"while extracting {' or '.join(unfinished)}; nothing is lost: "
                        "finished clips are cached, run the command again"
                    ) from None
                finished.add(str(path))
                yield path, key, problem, busy
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # not the clips still queued
            raise


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
_started: Any = None  #: the parent's queue of clips begun, to name the one a dead worker had


def _init_worker(config: Any, root: str, lifeline: Connection, started: Any) -> None:
    global _worker, _worker_error, _started
    import cv2
    import torch

    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    _started = started

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        _worker = (FeatureExtractor(config), FeatureCache(root))
    except AvsentError as exc:  # e.g. missing weights: a problem of the run, not of a clip
        _worker_error = str(exc)


def _exit_with_parent(lifeline: Connection) -> None:
    """Wait for end-of-file on the lifeline (the parent died), then end this worker.

    Not ``PR_SET_PDEATHSIG``: a forkserver worker's parent is the forkserver, which itself
    stays alive as long as any worker does.
    """
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(1)


def _work(path: Path, key: str) -> tuple[str | None, float]:
    if _worker is None:
        # re-raised in the parent, which stops the run; plain AvsentError pickles cleanly
        raise AvsentError(_worker_error or "feature worker was not initialised")
    _started.put(str(path))
    return _extract_into(*_worker, path, key)


def _extract_into(
    extractor: FeatureExtractor, cache: FeatureCache, path: Path, key: str
) -> tuple[str | None, float]:
    """Extract and store one clip → (the problem as text when it cannot be used, seconds).

    A clip's own problem is returned; failing to write the cache raises, as it would fail
    for every clip after it.
    """
    start = time.perf_counter()
    problem = None
    try:
        with cache.claim(key) as ours:  # another run on this cache may be extracting it
            if ours:
                problem = _extract_and_store(extractor, cache, path, key)
    except OSError as exc:
        raise _cache_write_error(exc, cache.path_of(key), path) from None
    return problem, time.perf_counter() - start


def _extract_and_store(
    extractor: FeatureExtractor, cache: FeatureCache, path: Path, key: str
) -> str | None:
    try:
        features = extractor.extract(path)
    except MediaError as exc:
        return exc.problem
    except AvsentError as exc:
        return str(exc)
    except Exception as exc:  # one odd file must not end a long run; report it instead
        return f"unexpected {type(exc).__name__}: {exc}"
    cache.put(key, features, EntrySpec.of(extractor.config))
    return None


def _cache_write_error(exc: OSError, target: Path, clip: Path | None) -> CacheWriteError:
    """A one-line CacheWriteError (plain message, so it pickles back from a worker)."""
    reason = _WRITE_FAILURES.get(exc.errno, exc.strerror or str(exc))
    during = f" while caching {clip}" if clip is not None else ""
    return CacheWriteError(
        f"cannot write the feature cache {target} ({reason}){during}; nothing is lost: "
        "finished clips are cached — free space or fix permissions (or set "
        "data.cache_dir elsewhere), then run the command again"
    )


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
