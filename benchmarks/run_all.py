"""Run every benchmark of the project and write one Markdown report.

    python benchmarks/run_all.py                     # everything → benchmarks/REPORT.md
    python benchmarks/run_all.py --list              # the benchmark names
    python benchmarks/run_all.py --only faces,emodb  # a selection (e.g. the slow ones)
    python benchmarks/run_all.py --only gpu          # the CUDA run (not run without a GPU)
    python benchmarks/run_all.py --skip emodb --out /tmp/report.md

Benchmarks are the pytest-benchmark files ``benchmarks/bench_<name>.py`` (each run in its
own pytest process) and ``emodb``: speech emotion accuracy on EmoDB, the openSMILE + SVM
peer (:mod:`emodb_peer`) and avsent (``benchmarks/emodb_avsent.py``, when present) on the
same leave-one-speaker-out folds. Every figure is shown next to the baseline measured in
the same run; the conventions are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EMODB = "emodb"
SLOW = {EMODB}  #: listed as slow by --list; run them with --only NAME or a full run
METRICS = ("accuracy", "macro_recall", "macro_f1")


@attrs.define
class BenchRun:
    """The outcome of one benchmark: ``status`` is ok, failed or not run."""

    name: str
    status: str
    seconds: float
    source: str
    data: Any = None  #: pytest-benchmark JSON, or the EmoDB results
    log: str = ""


# -- discovery and running -----------------------------------------------------------


def discover(bench_dir: Path = HERE) -> dict[str, Path | None]:
    """``bench_<name>.py`` files by name, then ``emodb`` (no file: run in-process)."""
    found: dict[str, Path | None] = {
        p.stem.removeprefix("bench_"): p for p in sorted(bench_dir.glob("bench_*.py"))
    }
    found[EMODB] = None
    return found


def run_pytest_benchmark(name: str, path: Path, timeout: float) -> BenchRun:
    """One bench file in a fresh pytest process; its JSON report is the data."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(path),
            "--benchmark-only",
            f"--benchmark-json={out}",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",  # the reason of each skip, for a bench file that cannot run here
        ]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            log, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            log, rc = f"timed out after {timeout:.0f} s\n{partial or ''}", -1
        seconds = time.perf_counter() - start
        data = json.loads(out.read_text()) if out.exists() else None
    status = "ok" if rc == 0 and data else "failed"
    if rc == 0 and not (data or {}).get("benchmarks"):  # every test skipped (e.g. no GPU)
        status, log = "not run", "\n".join(_skip_reasons(log)) or log
    return BenchRun(name, status, seconds, _rel(path), data, _tail(log))


def _skip_reasons(log: str) -> list[str]:
    """The distinct reasons in pytest's ``-rs`` summary (``SKIPPED [n] file:line: why``)."""
    reasons = [
        line.split(": ", 1)[1]
        for line in log.splitlines()
        if line.startswith("SKIPPED") and ": " in line
    ]
    return list(dict.fromkeys(reasons))


def run_emodb(emodb_dir: Path, seeds: Sequence[int], hook: Path) -> BenchRun:
    """The peer (reference and tuned, both feature sets) and avsent's hook, same folds."""
    sys.path.insert(0, str(HERE))
    import emodb_peer

    start = time.perf_counter()
    data: dict[str, Any] = {"emodb_dir": str(emodb_dir), "systems": [], "avsent": None}
    try:
        files = emodb_peer.emodb_files(emodb_dir)
    except FileNotFoundError as e:
        return BenchRun(EMODB, "not run", 0.0, "benchmarks/emodb_peer.py", log=str(e))
    folds = emodb_peer.loso_folds_emodb(files)
    data["n_clips"], data["speakers"] = len(files), [f.speaker for f in folds]
    data["c_grid"] = list(emodb_peer.C_GRID)
    for feature_set in emodb_peer.FEATURE_SETS:
        data["systems"].append(emodb_peer.peer_results(emodb_dir, feature_set))
        data["systems"].append(
            emodb_peer.peer_results(emodb_dir, feature_set, inner_grid=emodb_peer.C_GRID)
        )
    log = ""
    status = "ok"
    if hook.exists():
        try:
            spec = importlib.util.spec_from_file_location("emodb_avsent", hook)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            avsent = module.avsent_results(emodb_dir, folds, list(seeds))
            data["avsent"] = avsent if isinstance(avsent, list) else [avsent]
        except Exception:  # the peer's figures still make the report
            status, log = "failed", "avsent side failed:\n" + _tail(traceback.format_exc())
    else:
        log = f"{_rel(hook)} is absent: the avsent side was not run"
    return BenchRun(
        EMODB, status, time.perf_counter() - start, "benchmarks/emodb_peer.py", data, log
    )


# -- the machine -----------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """What the figures depend on: CPU, cores, memory, accelerator, library versions."""
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical",
        "memory": _memory(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    try:
        import torch

        info["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
        info["accelerator"] = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
        )
    except ImportError:
        info["torch"] = "not installed"
    info["commit"] = _git_commit()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD")
    if not sha:
        return "unknown"
    return sha + (
        " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


# -- the report ------------------------------------------------------------------------


def render_report(runs: Sequence[BenchRun], machine: dict[str, str], command: str) -> str:
    lines = [
        "# avsent benchmark report",
        "",
        f"Produced by `{command}` on {machine['date']}. Every figure sits next to its "
        "baseline measured in the same run.",
        "",
        "## Machine",
        "",
        *(f"- **{k}**: {v}" for k, v in machine.items() if k != "date"),
        "",
        "## Benchmarks",
        "",
        "| name | source | status | wall time |",
        "|---|---|---|---|",
        *(f"| {r.name} | `{r.source}` | {r.status} | {r.seconds:.1f} s |" for r in runs),
        "",
    ]
    for run in runs:
        if run.name == EMODB and run.data:
            lines += _emodb_section(run)
        else:
            lines += _pytest_section(run)
    return "\n".join(lines).rstrip() + "\n"


def _pytest_section(run: BenchRun) -> list[str]:
    lines = [f"## {run.name}", ""]
    benchmarks = (run.data or {}).get("benchmarks", [])
    if run.status != "ok":
        lines += [f"**{run.status}**" + (":" if run.log else ""), ""]
        if run.log:
            lines += ["```", run.log, "```", ""]
    if not benchmarks:
        return lines
    groups: dict[str, list[dict]] = {}
    for b in benchmarks:
        groups.setdefault(_group(b), []).append(b)
    lines += [
        "| group | test | role | mean | ± std | median | rounds | speed-up vs baseline | extra_info |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    figures: list[str] = []
    for group, members in groups.items():
        baselines = [b for b in members if _role(b) == "baseline"]
        for b in members:
            s, info = b["stats"], b["extra_info"]
            role = _role(b) or ("avsent" if baselines else "")
            speedup = "; ".join(
                f"{base['stats']['mean'] / s['mean']:.2f}×"
                + (f" vs {_label(base)}" if len(baselines) > 1 else "")
                for base in baselines
                if role != "baseline" and s["mean"] > 0
            )
            lines.append(
                f"| {group} | `{b['name']}` | {role} | {_time(s['mean'])} | "
                f"{_time(s['stddev'])} | {_time(s['median'])} | {s['rounds']} | "
                f"{speedup or '—'} | {_extra(info)} |"
            )
            figures += [_figure_row(b["name"], f) for f in _figures(info)]
    lines.append("")
    if figures:
        lines += [
            "| test | figure | value | baseline | ratio | unit |",
            "|---|---|---|---|---|---|",
            *figures,
            "",
        ]
    return lines


WAY = "way"  #: a parameter naming the avsent way ("avsent…") or a baseline (anything else)


def _group(b: dict) -> str:
    """The pytest-benchmark group, else the test function plus its params other than ``way``."""
    if b.get("group"):
        return b["group"]
    params = b.get("params") or {}
    if WAY not in params:
        return ""
    others = ", ".join(f"{k}={v}" for k, v in params.items() if k != WAY)
    return b["name"].split("[")[0] + (f" ({others})" if others else "")


def _role(b: dict) -> str:
    """``extra_info["role"]``, else avsent/baseline from the ``way`` parameter."""
    if "role" in b["extra_info"]:
        return str(b["extra_info"]["role"])
    way = (b.get("params") or {}).get(WAY)
    if way is None:
        return ""
    return "avsent" if str(way).startswith("avsent") else "baseline"


def _label(b: dict) -> str:
    return str((b.get("params") or {}).get(WAY, b["name"]))


FIGURE_KEYS = {"role", "figure", "figures", "value", "baseline", "baseline_name", "unit", "ratio"}


def _extra(info: dict) -> str:
    """The free-form ``extra_info`` entries (not part of the figure convention)."""
    return ", ".join(f"{k}={_num(v)}" for k, v in info.items() if k not in FIGURE_KEYS).replace(
        "|", "/"
    )


def _figures(info: dict) -> list[dict]:
    """Named figures of a test: ``extra_info["figures"]`` (a list) and/or flat keys."""
    found = list(info.get("figures", []))
    if "figure" in info:
        found.append(info)
    return found


def _figure_row(test: str, f: dict) -> str:
    value, baseline = f.get("value"), f.get("baseline")
    ratio = f.get("ratio")
    if ratio is None and isinstance(value, int | float) and isinstance(baseline, int | float):
        ratio = value / baseline if baseline else None
    name = f["figure"] + (f" (baseline: {f['baseline_name']})" if "baseline_name" in f else "")
    return (
        f"| `{test}` | {name} | {_num(value)} | {_num(baseline)} | "
        f"{_num(ratio, suffix='×')} | {f.get('unit', '')} |"
    )


def _emodb_section(run: BenchRun) -> list[str]:
    data = run.data
    systems = list(data["systems"])
    avsent = data.get("avsent")
    lines = [
        "## emodb — speech emotion accuracy",
        "",
        f"EmoDB, {data['n_clips']} clips, 6 classes (anger, disgust, fear, happiness, "
        f"sadness, neutral; boredom left out), leave-one-speaker-out over "
        f"{len(data['speakers'])} speakers. Pooled: all folds' predictions together; "
        "per fold: mean ± std over the speakers. avsent: mean ± std over seeds.",
        "",
        "| system | accuracy | macro recall | macro F1 | fold accuracy | fold macro F1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in systems + (avsent or []):
        std = r.get("pooled_std", {})
        pooled = " | ".join(_pct(r["pooled"][m], std.get(m)) for m in METRICS)
        lines.append(
            f"| {r['name']} | {pooled} | "
            f"{_pct(r['fold_mean_accuracy'], r['fold_std_accuracy'])} | "
            f"{_pct(r['fold_mean_macro_f1'], r['fold_std_macro_f1'])} |"
        )
    if not avsent:
        lines.append("| avsent | not run | | | | |")
    lines += ["", "Accuracy per test speaker:", ""]
    everyone = systems + (avsent or [])
    lines += [
        "| speaker | " + " | ".join(r.get("short", r["name"]) for r in everyone) + " |",
        "|---|" + "---|" * len(everyone),
    ]
    for speaker in data["speakers"]:
        cells = " | ".join(_pct(r["per_fold"][speaker]["accuracy"]) for r in everyone)
        lines.append(f"| {speaker} | {cells} |")
    lines.append("")
    for r in avsent or []:
        if "per_seed" in r:
            seeds = ", ".join(_pct(p["accuracy"]) for p in r["per_seed"])
            lines += [f"{r['name']}, accuracy per seed: {seeds}", ""]
        if "settings" in r:
            settings = ", ".join(f"`{k}={v}`" for k, v in r["settings"].items())
            lines += [f"{r['name']}, settings over the recipe's defaults: {settings}", ""]
        if "train_minutes_per_seed" in r:
            minutes = ", ".join(f"{m:.0f}" for m in r["train_minutes_per_seed"])
            lines += [
                f"{r['name']}, training minutes per seed (all folds, summed epoch times; "
                f"finished runs of the same settings are reused): {minutes}",
                "",
            ]
    tuned = [r for r in systems if "chosen_C" in r]
    if tuned:
        lines += [
            "Tuned peers' C per outer fold, chosen from "
            f"{', '.join(f'{c:g}' for c in data['c_grid'])} by an inner "
            "leave-one-speaker-out on that fold's training speakers: "
            + "; ".join(
                f"{r['feature_set']}: " + ", ".join(f"{k}→{v:g}" for k, v in r["chosen_C"].items())
                for r in tuned
            ),
            "",
        ]
    if run.log:
        lines += [f"Note: {run.log}", ""]
    return lines


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" + (f" ± {std:.1%}" if std is not None else "")


def _num(value: Any, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}{suffix}"
    return f"{value}{suffix}"


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# -- command line ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    parser.add_argument("--only", default="", help="comma-separated names to run")
    parser.add_argument("--skip", default="", help="comma-separated names not to run")
    parser.add_argument("--out", type=Path, default=HERE / "REPORT.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--bench-dir", type=Path, default=HERE, help="where bench_*.py live")
    parser.add_argument(
        "--emodb", type=Path, default=REPO.parent / "shared" / "data" / "speech" / "emodb"
    )
    parser.add_argument("--seeds", default="0,1,2", help="seeds for avsent's EmoDB runs")
    parser.add_argument(
        "--avsent-hook", type=Path, default=HERE / "emodb_avsent.py", help="avsent_results() module"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds per bench file before it is stopped"
    )
    args = parser.parse_args(argv)

    available = discover(args.bench_dir)
    if args.list:
        for name, path in available.items():
            where = _rel(path) if path else "emodb_peer.py + emodb_avsent.py"
            print(f"{name:20} {where}{'  (slow)' if name in SLOW else ''}")
        return 0
    chosen = [n for n in args.only.split(",") if n] or list(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(available)}")
    skipped = {n for n in args.skip.split(",") if n}
    seeds = [int(s) for s in args.seeds.split(",") if s]

    runs = []
    for name in chosen:
        if name in skipped:
            continue
        print(f"→ {name}", flush=True)
        path = available[name]
        run = (
            run_emodb(args.emodb, seeds, args.avsent_hook)
            if path is None
            else run_pytest_benchmark(name, path, args.timeout)
        )
        print(f"  {run.status} in {run.seconds:.1f} s", flush=True)
        if run.status == "not run" and run.log:
            print(f"  {run.log.splitlines()[0]}", flush=True)
        runs.append(run)

    command = "python benchmarks/run_all.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    report = render_report(runs, machine_info(), command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    if args.json:
        args.json.write_text(json.dumps([attrs.asdict(r) for r in runs], indent=2, default=str))
    print(f"report: {args.out}")
    return 0 if all(r.status != "failed" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
