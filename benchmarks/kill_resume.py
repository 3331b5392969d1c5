"""Kill -9 a search at random moments, resume it each time: is every finished trial kept, the budget exact, the
study usable?

Each kill starts a fresh `autoslim search` (tiny task, a space without fine-tune, budget 6) in its own process
group, kills the whole group with SIGKILL at a moment drawn with a fixed seed, then runs the same command again.
Moments rotate through three kinds:

* ``trial``: a random delay after the k-th trial finished (k random), i.e. while the next trial runs;
* ``journal``: the instant the journal grows (a trial's result being appended: ~15 writes in a row, each fsync'd);
* ``report``: a random delay after the last trial finished, while trials.csv / PNGs / report.html are written.

Per kill: the moment, trials finished before the kill and after the resume, whether every trial finished before is
unchanged after, whether the budget is exact, whether the journal had a torn last line, and whether the study is
usable (resume exit 0, no trial left running, trials.csv / report.html complete, the folder opens for `report`).

    python benchmarks/kill_resume.py [--kills 20] [--seed 0] [--out results/benchmarks/kill_resume.csv]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autoslim.report.results import open_results
from autoslim.search.study import counts_as_finished

REPO = Path(__file__).resolve().parents[1]
BUDGET = 6
SPACE = {
    "name": "kill-resume",
    "profiles": ["x86-avx512-vnni", "mcu-cortex-m7"],
    "techniques": {
        "prune.unstructured": {"params": {"amount": {"float": [0.3, 0.8]}}},
        "quantize": {"params": {"weight_bits": {"choice": [4, 8]}}},
    },
    "recipes": [{"quantize": {"weight_bits": 8}}],
}
KINDS = ("trial", "journal", "report")


def command(space: Path, results: Path) -> list[str]:
    return [sys.executable, "-c", "from autoslim.cli import main; main()", "search", "--budget", str(BUDGET),
            "--task", "tests.tiny_task:tiny_task", "--space", str(space), "--results", str(results),
            "--study", "s", "--workers", "1"]  # fmt: skip


def finished(journal: Path) -> dict[int, tuple]:
    """Finished trials as number -> (status, values), read without changing the file (Optuna skips a torn tail)."""
    if not journal.exists() or not journal.stat().st_size:
        return {}
    try:
        study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))))
    except KeyError:  # killed before the study was created
        return {}
    return {t.number: (t.user_attrs.get("status"), tuple(t.values or ())) for t in study.get_trials() if
            counts_as_finished(t)}  # fmt: skip


def _torn(journal: Path) -> bool:
    data = journal.read_bytes() if journal.exists() else b""
    return bool(data) and not data.endswith(b"\n")


def kill_once(kind: str, rng: random.Random, space: Path, results: Path, env: dict[str, str]) -> dict:
    journal = results / "s" / "study.journal"
    proc = subprocess.Popen(command(space, results), env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    start, detail = time.monotonic(), ""
    try:
        if kind == "trial":
            k = rng.randint(1, BUDGET - 3)
            _wait(lambda: len(finished(journal)) >= k, proc)
            delay = rng.uniform(0.0, 0.3)
            time.sleep(delay)
            detail = f"{delay:.2f} s after trial {k} of {BUDGET} finished"
        elif kind == "journal":
            k = rng.randint(1, BUDGET - 1)
            _wait(lambda: len(finished(journal)) >= k, proc)
            size = journal.stat().st_size
            _wait(lambda: journal.stat().st_size != size, proc, poll=0.0005)  # the next trial's writes begin
            detail = f"as the journal grew after trial {k} of {BUDGET}"
        else:
            _wait(lambda: len(finished(journal)) >= BUDGET, proc, poll=0.005)
            delay = rng.uniform(0.0, 1.5)
            time.sleep(delay)
            detail = f"{delay:.2f} s after the last trial finished (reports being written)"
    finally:
        exited_before = proc.poll() is not None
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and any worker it started
        proc.wait(timeout=60)
    at_kill, torn = finished(journal), _torn(journal)
    # What it was really doing: a loaded machine can make a kill aimed at a trial land later.
    phase = "exited" if exited_before else "reports" if len(at_kill) == BUDGET else "trials" if at_kill else "startup"
    resumed = subprocess.run(command(space, results), env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    after = finished(journal)
    kept = all(after.get(n) == v for n, v in at_kill.items())
    return {
        "kill": kind, "moment": detail, "killed_after_s": round(time.monotonic() - start, 2), "phase": phase,
        "exited_before_kill": exited_before, "journal_torn": torn, "finished_before_kill": len(at_kill),
        "finished_after_resume": len(after), "all_kept": kept, "budget_exact": len(after) == BUDGET,
        "usable": resumed.returncode == 0 and _usable(results / "s"),
        "resume_error": "" if resumed.returncode == 0 else resumed.stderr.strip().splitlines()[-1:],
    }  # fmt: skip


def _wait(done, proc: subprocess.Popen, *, poll: float = 0.02, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            return  # finished (or stuck): the kill still happens, the row says so
        time.sleep(poll)


def _usable(folder: Path) -> bool:
    """Resumable and readable: no trial left running, every product complete, `autoslim report` can open it."""
    results = open_results(folder)
    running = results.study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    trials = pd.read_csv(folder / "trials.csv")
    complete = (trials["status"] != "interrupted").sum() == BUDGET and (folder / "report.html").stat().st_size > 0
    return not running and complete and len(results.trials) == len(trials)


def run(kills: int, seed: int, out: Path) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOSLIM_CACHE": str(Path(tmp) / "cache")}
        for i in range(kills):
            row = kill_once(KINDS[i % len(KINDS)], rng, space, Path(tmp) / f"run{i}", env)
            rows.append(row)
            print(f"{i + 1:2d}/{kills} {row['kill']:7s} {row['moment']} [{row['phase']}]: "
                  f"{row['finished_before_kill']} -> "
                  f"{row['finished_after_resume']} kept={row['all_kept']} exact={row['budget_exact']} "
                  f"usable={row['usable']} torn={row['journal_torn']}", flush=True)  # fmt: skip
    df = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    good = int((df["all_kept"] & df["budget_exact"] & df["usable"]).sum())
    phases = df["phase"].value_counts().to_dict()
    print(f"{good}/{kills} kills resumed with every finished trial kept, the budget exact and the study usable "
          f"(killed during {phases}; {int(df['journal_torn'].sum())} left a torn journal line); {out}")  # fmt: skip
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "results/benchmarks/kill_resume.csv")
    args = ap.parse_args()
    df = run(args.kills, args.seed, args.out)
    sys.exit(0 if (df["all_kept"] & df["budget_exact"] & df["usable"]).all() else 1)


if __name__ == "__main__":
    main()
