"""How idle CPU threads wait: asleep, so a busy machine slows training by its fair share.

torch's CPU kernels run on an OpenMP pool (GNU libgomp in the pip wheels, Intel's in some
builds). By default an idle pool thread spins for a while at the end of each parallel
region, so that the next one starts a few microseconds sooner. Alone on the machine that
costs nothing; sharing the cores with another busy process, the spinning threads take
the time the working ones need, and every region waits for its slowest thread. On a
2-core machine a 60-epoch ``drsn-audio`` run went from 1.8 to 28-46 s per epoch beside
two other processes (issue 18). Sleeping at once instead (``OMP_WAIT_POLICY=PASSIVE``;
Intel OpenMP: ``KMP_BLOCKTIME=0``) leaves a step at about its fair share there
(benchmarks/bench_busy.py). The thread count stays torch's default, one per core: on a
busy 2-core machine two passive threads still beat one.

OpenMP reads these variables once, when torch loads it, so they must be in the
environment before ``import torch``: the ``avsent`` command sets them first thing
(:mod:`avsent.cli`). A value the user exported wins.
"""

from __future__ import annotations

from collections.abc import Mapping

#: the environment for sleeping idle threads, per OpenMP runtime
PASSIVE_WAITS: dict[str, str] = {
    "OMP_WAIT_POLICY": "PASSIVE",  # the OpenMP standard: libgomp, Intel, LLVM
    "KMP_BLOCKTIME": "0",  # Intel / LLVM OpenMP: milliseconds to spin before sleeping
}


def passive_waits(environ: Mapping[str, str]) -> dict[str, str]:
    """The entries of :data:`PASSIVE_WAITS` that ``environ`` does not set already."""
    return {k: v for k, v in PASSIVE_WAITS.items() if k not in environ}
