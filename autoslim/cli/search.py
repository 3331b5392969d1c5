"""``autoslim search``: run (or resume) a study and write a Pareto front per hardware profile."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autoslim.cli.errors import exit_code, one_line
from autoslim.cli.options import (
    NO_LIMIT,
    ExecutorKind,
    ProfilesOption,
    Sampler,
    SpaceOption,
    TaskOption,
    above_zero,
    duration_option,
    plain_name,
)
from autoslim.cli.progress import progress_reporter
from autoslim.cli.summary import print_failures, print_fronts, print_summary
from autoslim.cost import builtin_profiles, get_profile
from autoslim.safe_io import check_study_files, check_writable_folder, study_folder
from autoslim.search import SearchConfig, default_space_path, load_space, run_search
from autoslim.search.time_budget import parse_duration

EXECUTOR_DEFAULT = "inline with --workers 1, ray with --ray-address, else process"


class SearchFailed(RuntimeError):
    """A failure during a search, with where its finished trials are kept."""

    exit_code = 1


def search(
    ctx: typer.Context,
    budget: Annotated[
        int,
        typer.Option(
            min=1,
            help="Finished trials the study should hold (a rerun only tops up); with --time-budget and no "
            "--budget: as many as fit.",
        ),
    ] = 50,
    time_budget: Annotated[
        str | None,
        typer.Option(
            callback=duration_option,
            help="Wall-clock budget of this run, e.g. 8h, 45m, 1h30m: a trial starts only while it is expected to "
            "end in time (teacher and preflight count).",
            show_default=NO_LIMIT,
        ),
    ] = None,
    task: TaskOption = "mnist1d-cnn",
    space: SpaceOption = None,
    profile: ProfilesOption = None,
    study: Annotated[
        str, typer.Option(callback=plain_name, help="Study name (a plain name): results go to RESULTS/<study>/.")
    ] = "default",
    results: Annotated[Path, typer.Option(help="Folder holding one sub-folder per study.")] = Path("results"),
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Sampler seed; trial n uses seed + n.")] = 0,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel single-thread trials.", show_default="one per CPU core")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(callback=above_zero, help="Stop starting trials after this many seconds.", show_default=NO_LIMIT),
    ] = None,
    warm_start: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="A previous study folder: try its fronts' plans first.",
            show_default="none",
        ),
    ] = None,
    sampler: Annotated[
        Sampler, typer.Option(help="The Optuna sampler (auto: multi-objective TPE, the benchmarked best).")
    ] = Sampler.auto,
    executor: Annotated[
        ExecutorKind | None,
        typer.Option(help="Where trials run.", show_default=EXECUTOR_DEFAULT),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="A running Ray cluster, HEAD:6379.", show_default="start a local Ray instance")
    ] = None,
    cpus_per_trial: Annotated[float, typer.Option(callback=above_zero, help="CPUs (torch threads) per trial.")] = 1.0,
    gpus_per_trial: Annotated[float, typer.Option(min=0, help="GPUs Ray reserves per trial (--executor ray).")] = 0.0,
    early_stop: Annotated[
        bool, typer.Option(help="Stop fine-tunes that cannot meet the constraints or enter any front (status stopped).")
    ] = True,
    preflight: Annotated[
        bool, typer.Option(help="First try each technique on the teacher; search only what applies (new study).")
    ] = True,
    multifidelity: Annotated[
        bool | None,
        typer.Option(
            "--multifidelity/--no-multifidelity",
            help="Rungs of fine-tune length (ASHA): every fine-tune first runs 1/9 of its length, the top third "
            "of each rung by rank and hypervolume share over every profile goes on (1/3, then all); only the last rung "
            "enters the fronts. A space's `rungs:` sets the ladder.",
            show_default="as the space says (its rungs:)",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="An Optuna RDB URL (sqlite:///FILE, postgresql://USER@HOST/DB) several drivers share.",
            show_default="RESULTS/<study>/study.journal, one driver at a time",
        ),
    ] = None,
) -> None:
    """Search compression plans; write trials.csv, pareto_<profile>.csv/.png and report.html under RESULTS/<study>/.

    At the end: each profile's front, the best point within 1 pp of the baseline per profile, and the `autoslim
    pick` / `autoslim export` commands to run next.
    """
    console = Console()
    # Bad input first (exit code 2): the space, the profiles, then a folder inside --results free of planted symlinks.
    sp = load_space(Path(space) if space else default_space_path())
    names = profile or list(sp.profiles) or list(builtin_profiles())
    profiles = [get_profile(n) for n in names]
    folder = check_study_files(study_folder(check_writable_folder(results, what="--results"), study))
    try:
        seconds = parse_duration(time_budget) if time_budget else None
        # Typer vendors its own click: its ParameterSource is compared by name
        given = getattr(ctx.get_parameter_source("budget"), "name", "DEFAULT") != "DEFAULT"
        trials = None if seconds is not None and not given else budget
        config = SearchConfig(space=sp, profiles=profiles, budget=trials, time_budget_s=seconds, task=task,
                              study=study, results_dir=results, seed=seed,
                              workers=workers, timeout_s=timeout, sampler=sampler.value,
                              warm_start=warm_start, executor=executor.value if executor else None,
                              ray_address=ray_address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                              early_stop=early_stop, preflight=preflight, storage=storage,
                              multifidelity=multifidelity)  # fmt: skip
        with progress_reporter(console, trials) as report:
            outcome = run_search(config, on_progress=report.search)
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
    print_fronts(console, outcome, profiles)
    print_failures(console, outcome.trials)
    print_summary(console, outcome, profiles, task)
    console.print(f"{outcome.ran} trial(s) run now; results in {outcome.folder}/", markup=False, highlight=False)
    if outcome.interrupted:
        sys.exit(130)
