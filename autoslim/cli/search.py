"""``autoslim search``: run (or resume) a study and write a Pareto front per hardware profile."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoslim.cli.errors import exit_code, one_line
from autoslim.cli.options import above_zero, one_of, plain_name
from autoslim.cli.progress import progress_reporter
from autoslim.cost import builtin_profiles, get_profile
from autoslim.safe_io import check_study_files, check_writable_folder, study_folder
from autoslim.search import SearchConfig, default_space_path, load_space, run_search
from autoslim.search.study import SAMPLERS

EXECUTORS = ("inline", "process", "ray")


class SearchFailed(RuntimeError):
    """A failure during a search, with where its finished trials are kept."""

    exit_code = 1


def search(
    budget: Annotated[
        int, typer.Option(min=1, help="Finished trials the study should hold (a rerun only tops up).")
    ] = 50,
    task: Annotated[str, typer.Option(help="Built-in task name or 'module:attr'.")] = "mnist1d-cnn",
    space: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, readable=True, help="Search space YAML [default: search_spaces/default.yaml]."
        ),
    ] = None,
    profile: Annotated[list[str] | None, typer.Option(help="Profile name or YAML path; repeat for several.")] = None,
    study: Annotated[
        str, typer.Option(callback=plain_name, help="Study name (a plain name): results go to RESULTS/<study>/.")
    ] = "default",
    results: Annotated[Path, typer.Option(help="Folder holding one sub-folder per study.")] = Path("results"),
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Sampler seed; trial n uses seed + n.")] = 0,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel single-thread trials [default: CPU cores].")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(callback=above_zero, help="Stop starting trials after this many seconds.")
    ] = None,
    warm_start: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="A previous study folder: try its fronts' plans first."),
    ] = None,
    sampler: Annotated[
        str,
        typer.Option(callback=one_of(SAMPLERS), help="auto | tpe | nsga2 | gp | random (auto: the benchmarked best)."),
    ] = "auto",
    executor: Annotated[
        str | None,
        typer.Option(
            callback=one_of(EXECUTORS),
            help="inline | process | ray [default: inline if --workers 1, ray given an address, else process]",
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="A running Ray cluster, HEAD:6379 [default: start a local Ray instance].")
    ] = None,
    cpus_per_trial: Annotated[float, typer.Option(callback=above_zero, help="CPUs (torch threads) per trial.")] = 1.0,
    gpus_per_trial: Annotated[float, typer.Option(min=0, help="GPUs Ray reserves per trial (--executor ray).")] = 0.0,
    early_stop: Annotated[
        bool, typer.Option(help="Stop fine-tunes that cannot meet the constraints or enter any front.")
    ] = True,
    preflight: Annotated[
        bool, typer.Option(help="First try each technique on the teacher; search only what applies (new study).")
    ] = True,
    storage: Annotated[
        str | None,
        typer.Option(
            help="An Optuna RDB URL (sqlite:///FILE, postgresql://USER@HOST/DB) several drivers share "
            "[default: RESULTS/<study>/study.journal, one driver at a time]."
        ),
    ] = None,
) -> None:
    """Search compression plans; write trials.csv and pareto_<profile>.csv/.png under RESULTS/<study>/."""
    console = Console()
    # Bad input first (exit code 2): the space, the profiles, then a folder inside --results free of planted symlinks.
    sp = load_space(space or default_space_path())
    names = profile or list(sp.profiles) or list(builtin_profiles())
    profiles = [get_profile(n) for n in names]
    folder = check_study_files(study_folder(check_writable_folder(results, what="--results"), study))
    try:
        config = SearchConfig(space=sp, profiles=profiles, budget=budget, task=task, study=study, results_dir=results,
                              seed=seed, workers=workers, timeout_s=timeout, sampler=sampler,
                              warm_start=warm_start, executor=executor, ray_address=ray_address,
                              cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                              early_stop=early_stop, preflight=preflight, storage=storage)  # fmt: skip
        with progress_reporter(console, budget) as report:
            outcome = run_search(config, on_progress=report)
    except Exception as exc:
        if exit_code(exc) == 2:
            raise  # bad input (a task, a changed study): the message already names it
        # A failure mid-way (a full disk, an unwritable trials.csv): say where the finished work is kept.
        raise SearchFailed(
            f"{folder}: {one_line(exc)}. Finished trials are kept in {folder / 'study.journal'}; "
            "fix this and rerun the same command to resume and rewrite the reports"
        ) from exc
    for note in outcome.notes:
        console.print(note, markup=False, highlight=False)
    for p in profiles:
        front = outcome.fronts[p.name]
        table = Table(title=f"{p.name}: Pareto front (accuracy vs. {p.objective})", title_justify="left")
        for col in ("trial", "accuracy", "latency ms", "bytes", "plan"):
            table.add_column(col, overflow="fold")
        for _, r in front.iterrows():
            table.add_row(str(r["trial"]), f"{r['accuracy']:.2%}", f"{r[f'{p.name}.latency_ms']:.4g}",
                          f"{int(r[f'{p.name}.model_bytes']):,}", escape(str(r["plan"])))  # fmt: skip
        console.print(table)
    _print_failures(console, outcome.trials)
    console.print(f"{outcome.ran} trial(s) run now; results in {outcome.folder}/", markup=False, highlight=False)
    if outcome.interrupted:
        sys.exit(130)


def _print_failures(console: Console, trials: pd.DataFrame) -> None:
    """Failed, infeasible and stopped trials keep their reasons; show how many and the most common ones."""
    bad = trials[~trials["status"].isin(["ok", "interrupted"])] if len(trials) else trials
    if bad.empty:
        return
    reasons = bad["reason"].fillna("").str.split("\n").str[0].str.slice(0, 140).value_counts()
    console.print(f"{len(bad)} trial(s) did not finish ok ({bad['status'].value_counts().to_dict()}); reasons:",
                  markup=False, highlight=False)  # fmt: skip
    for reason, count in reasons.head(5).items():
        console.print(f"  {count}x {reason}", markup=False, highlight=False)
