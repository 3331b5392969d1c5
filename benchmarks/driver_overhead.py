"""How much does the driver cost per trial, and does it grow with the study? A search of millisecond trials.

The real driver (``run_search``, inline executor, journal storage, the default sampler) runs N trials of the
contract kit's tiny task (``autoslim.testing.tiny``: a small 1-D CNN, trials of tens of milliseconds) over a space
without fine-tunes (unstructured pruning, quantization), priced on the default space's four profiles. Each trial's
span runs from the end of one progress callback to the start of the next, so it holds exactly one trial's driver
work and its ``run_trial``; overhead is the span minus the time inside ``run_trial``.

Functions are wrapped with timers from the outside (nothing in the driver is edited): ask, the plan's define-by-run
sampling, recording (user attrs + tell, one journal append since issue 14), the incremental fronts' update, and
inside them Optuna's tell, set_user_attr, get_trials and the journal's reads and appends; inside ``run_trial``,
pricing every profile, the per-step footprint and scoring; the sampler's own methods. The trials table and
``current_fronts`` are still timed: since the driver keeps its fronts incrementally they run only at the start and
the end (a per-trial figure of zero is the point).

    python benchmarks/driver_overhead.py [--trials 2000] [--sampler auto] [--window 100] [--no-early-stop]

Writes results/benchmarks/driver_overhead.csv (one row per window of trials: mean ms per trial of the overhead
and of each component, calls where counted, RSS) and driver_overhead.png; the per-trial rows go to
driver_overhead_trials.csv (``_<sampler>`` for another sampler than auto). The files of the driver before issue 14
were kept as driver_overhead_before_issue14*.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
import pandas as pd
import torch
import yaml
from optuna.storages.journal import JournalFileBackend

import autoslim.execution.inline as inline
import autoslim.search.driver as driver
import autoslim.trial as trial_mod
from autoslim.cost import get_profile
from autoslim.search import Progress, SearchConfig, default_space_path, load_space, run_search
from autoslim.search.fronts import ParetoFronts
from autoslim.search.study import make_sampler

OUT = Path("results/benchmarks")
TASK = "autoslim.testing.tiny:tiny_task"
SPACE = {  # no fine-tune: every trial is milliseconds of pruning, quantizing, scoring and pricing
    "name": "driver-overhead",
    "techniques": {
        "prune.unstructured": {"params": {"amount": {"float": [0.1, 0.9]}}},
        "quantize": {"params": {"weight_bits": {"choice": [2, 3, 4, 6, 8]}, "act_bits": {"choice": [8, None]}}},
    },
    "recipes": [{"quantize": {"weight_bits": 8, "act_bits": 8}}],
}
# (label, owner, attribute, top level): top-level ones run in the driver loop itself and do not nest in each
# other; the rest are parts of them (or of run_trial), shown as "of which".
WRAPPED: list[tuple[str, Any, str, bool]] = [
    ("ask", driver, "ask", True),
    ("sample plan", driver, "_plan_for", True),
    ("record (attrs + tell)", driver, "_record", True),
    ("trials_frame", driver, "trials_frame", True),
    ("current_fronts", driver, "current_fronts", True),
    ("fronts update", ParetoFronts, "add", True),
    ("tell", optuna.study.Study, "tell", False),
    ("set_user_attr", optuna.trial.Trial, "set_user_attr", False),
    ("get_trials", optuna.study.Study, "get_trials", False),
    ("journal read", JournalFileBackend, "read_logs", False),
    ("journal append", JournalFileBackend, "append_logs", False),
    ("run_trial", inline, "run_trial", False),
    ("price (in trial)", trial_mod, "price", False),
    ("footprint (in trial)", trial_mod, "_footprint", False),
    ("score (in trial)", trial_mod, "score", False),
]


class Timers:
    """Inclusive seconds per label, from wrappers put around functions (and taken off again by ``restore``)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, label: str, owner: Any, name: str) -> bool:
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if original is None:  # the driver changed under us: time what is still there, say what is not
            print(f"note: {getattr(owner, '__name__', owner)}.{name} not found; '{label}' is not timed")
            return False
        self.total.setdefault(label, 0.0)
        self.calls.setdefault(label, 0)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.total[label] += time.perf_counter() - t0
                self.calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))
        return True

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; the peak where that is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux


class Spans:
    """Per-trial spans between progress callbacks, with each timer's share of the span."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.rows: list[dict[str, float]] = []
        self._start = 0.0
        self._before: dict[str, float] = {}
        self._appends = 0

    def __call__(self, event: Progress) -> None:
        now = time.perf_counter()
        if event.result is not None:
            row = {"trial": float(len(self.rows) + 1), "span_ms": (now - self._start) * 1e3}
            row.update({k: (v - self._before.get(k, 0.0)) * 1e3 for k, v in self.timers.total.items()})
            row["overhead_ms"] = row["span_ms"] - row.get("run_trial", 0.0)
            row["rss_mb"] = rss_mb()
            row["journal appends (count)"] = float(self.timers.calls.get("journal append", 0) - self._appends)
            self.rows.append(row)
        self._before = dict(self.timers.total)
        self._appends = self.timers.calls.get("journal append", 0)
        self._start = time.perf_counter()  # the callback's own time stays out of every span


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, float, float]:
    runs = OUT / "driver_overhead_runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    if args.task == "tiny":
        os.environ["AUTOSLIM_CACHE"] = str(runs / "cache")  # preflight caches its probes there: start cold
        space_file = runs / "space.yaml"
        space_file.write_text(yaml.safe_dump(SPACE, sort_keys=False))
        task = TASK
    else:  # the default task and space as `autoslim search` runs them (the teacher from the usual cache)
        space_file, task = default_space_path(), "mnist1d-cnn"
    profiles = [get_profile(n) for n in load_space(default_space_path()).profiles]
    config = SearchConfig(space=load_space(space_file), profiles=profiles, budget=args.trials, task=task,
                          study="s", results_dir=runs, workers=1, sampler=args.sampler,
                          early_stop=not args.no_early_stop)  # fmt: skip
    timers = Timers()
    spans = Spans(timers)
    sampler = type(make_sampler(args.sampler, 0))
    for label, owner, name, _ in WRAPPED:
        timers.wrap(label, owner, name)
    for name in ("infer_relative_search_space", "sample_relative", "sample_independent", "after_trial"):
        if name in vars(sampler):  # one label, their sum (what a sampler inherits does nothing worth timing)
            timers.wrap(f"sampler ({sampler.__name__})", sampler, name)
    t0 = time.perf_counter()
    try:
        run_search(config, on_progress=spans)
    finally:
        timers.restore()
    end = time.perf_counter()
    wall, tail = end - t0, end - spans._start  # tail: after the last trial (report, plots, HTML)
    return pd.DataFrame(spans.rows).fillna(0.0), wall, tail


def windows(df: pd.DataFrame, size: int) -> pd.DataFrame:
    df = df.copy()
    df["window_end"] = ((df["trial"] - 1) // size + 1) * size
    means = df.drop(columns=["trial", "rss_mb"]).groupby("window_end").mean()
    means["overhead_p90_ms"] = df.groupby("window_end")["overhead_ms"].quantile(0.9)
    means["rss_mb"] = df.groupby("window_end")["rss_mb"].max()
    return means.reset_index()


def plot(win: pd.DataFrame, path: Path, top: list[str], note: str) -> None:
    fig, (ax, mem) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax.plot(win["window_end"], win["overhead_ms"], "k-", lw=2.5, label="driver overhead (span − run_trial)")
    sampler = [c for c in win.columns if c.startswith("sampler (")]
    for label in [*top, *sampler, "journal append", "price (in trial)"]:
        if label in win:
            ax.plot(win["window_end"], win[label], marker=".", label=label)
    ax.axhline(20, color="red", ls=":", label="target: 20 ms")
    ax.set(xlabel="trials finished", ylabel="ms per trial (window mean)", title=f"driver cost per trial ({note})")
    ax.legend(fontsize=7)
    mem.plot(win["window_end"], win["rss_mb"], "b-")
    mem.set(xlabel="trials finished", ylabel="MB", title="driver RSS")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--task", choices=["tiny", "default"], default="tiny",
                    help="tiny: millisecond trials (overhead is all there is); default: the default task and space, "
                    "for the framework's share of real trials")  # fmt: skip
    ap.add_argument("--sampler", default="auto")
    ap.add_argument("--no-early-stop", action="store_true", help="the driver's per-trial fronts for early stop off")
    ap.add_argument("--note", default="", help="said on the plot, e.g. 'loaded 2-core machine'")
    args = ap.parse_args()
    torch.set_num_threads(1)
    df, wall, tail = run(args)
    win = windows(df, args.window)
    OUT.mkdir(parents=True, exist_ok=True)
    name = (
        "driver_overhead"
        + (f"_{args.sampler}" * (args.sampler != "auto"))
        + ("_default_task" * (args.task == "default"))
    )
    df.round(3).to_csv(OUT / f"{name}_trials.csv", index=False)
    win.round(3).to_csv(OUT / f"{name}.csv", index=False)
    top = [label for label, _, _, top_level in WRAPPED if top_level and label in df]
    note = args.note or f"{args.trials} trials, {args.sampler}"
    plot(win, OUT / f"{name}.png", top, note)
    summary(df, win, top, wall, tail)
    if args.task == "default":
        shares(df).to_csv(OUT / "framework_overhead_default_task.csv", index=False)
        print(shares(df).to_string(index=False))


# What the issue counts as framework: everything but applying the plan, fine-tuning and evaluating it.
_FRAMEWORK = ("ask", "sample plan", "record (attrs + tell)", "fronts update", "trials_frame", "current_fronts",
              "price (in trial)", "footprint (in trial)")  # fmt: skip


def shares(df: pd.DataFrame) -> pd.DataFrame:
    """Per component: mean ms per trial and its share of the mean trial span (span: driver + run_trial)."""
    span = float(df["span_ms"].mean())
    rows = [(c, float(df[c].mean())) for c in _FRAMEWORK if c in df]
    rows.append(("driver, not timed above", float(df["overhead_ms"].mean()) - sum(
        v for c, v in rows if not c.endswith("(in trial)"))))  # fmt: skip
    framework = sum(v for _, v in rows)
    rows.append(("apply + fine-tune + evaluate (run_trial less pricing)", float(df["run_trial"].mean()) - sum(
        v for c, v in rows if c.endswith("(in trial)"))))  # fmt: skip
    rows.append(("framework total", framework))
    return pd.DataFrame([{"component": c, "ms_per_trial": round(v, 3), "share_of_trial_pct": round(100 * v / span, 3)}
                         for c, v in rows])  # fmt: skip


_NOT_COMPONENTS = ("window_end", "span_ms", "overhead_ms", "overhead_p90_ms", "rss_mb", "run_trial")


def summary(df: pd.DataFrame, win: pd.DataFrame, top: list[str], wall: float, tail: float) -> None:
    first, last = win.iloc[0], win.iloc[-1]
    print(f"{len(df)} trials in {wall:.1f} s (of which {df['run_trial'].sum() / 1e3:.1f} s in run_trial; "
          f"{tail:.1f} s after the last trial: report and plots); peak RSS {peak_rss_mb():.0f} MB")  # fmt: skip
    print(f"{'ms per trial':32s} {'first window':>12s} {'last window':>12s} {'growth':>8s}")
    accounted = [c for c in top if c in win]
    rows: list[tuple[str, Callable[[pd.Series], float]]] = [("overhead", lambda w: w["overhead_ms"])]
    rows += [(c, functools.partial(lambda w, c: w[c], c=c)) for c in accounted]
    rows.append(("  unaccounted", lambda w: w["overhead_ms"] - sum(w[c] for c in accounted)))
    rows += [(c, functools.partial(lambda w, c: w[c], c=c)) for c in win.columns
             if c not in accounted and c not in _NOT_COMPONENTS]  # fmt: skip
    rows.append(("run_trial", lambda w: w["run_trial"]))
    for name, get in rows:
        a, b = float(get(first)), float(get(last))
        print(f"{name:32s} {a:12.2f} {b:12.2f} {b - a:+8.2f}")
    print(f"overhead p90, last window: {last['overhead_p90_ms']:.1f} ms")
    print(f"RSS (window max) {first['rss_mb']:.0f} MB -> {last['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
