"""``autoslim sensitivity``: the per-layer sensitivity tables a ``policy: sensitivity`` search allocates from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from autoslim.cli.options import SpaceOption, TaskOption
from autoslim.plan import CompressionPlan
from autoslim.policy.sensitivity import sensitivity_table
from autoslim.policy.show import heatmap_png, table_frame
from autoslim.search import default_space_path, load_space
from autoslim.tasks import load_task
from autoslim.techniques import get_technique, list_techniques
from autoslim.trial import build_model


def sensitivity(
    task: TaskOption = "mnist1d-cnn",
    space: SpaceOption = None,
    out: Annotated[Path, typer.Option(help="Folder for the CSV and heat-map PNG per technique.")] = Path(
        "results/sensitivity"
    ),
) -> None:
    """Per layer and candidate value: the loss against the teacher when only that layer takes the value (cached)."""
    console = Console()
    sp = load_space(Path(space) if space else default_space_path())
    the_task = load_task(task)
    _, ctx = build_model(CompressionPlan(), the_task)  # the teacher, its data and calibration inputs
    techs = [t for t in sp.techniques if "sensitivity" in t.policies]
    if not techs:  # a space without policies: every technique that takes one, at its default candidates
        with_policy = [n for n in list_techniques() if get_technique(n).layer_policy is not None]
        techs = [t for t in sp.techniques if t.name in with_policy]
    folder = out / the_task.name
    for t in techs:
        config = get_technique(t.name).make_config({})
        candidates = t.candidates()
        with Progress(console=console, transient=True) as bar:
            job = bar.add_task(f"{t.name}: measuring", total=None)

            def step(done: int, total: int, bar: Progress = bar, job: TaskID = job) -> None:
                bar.update(job, completed=done, total=total)

            table = sensitivity_table(t.name, candidates, config, ctx, progress=step)
        frame = table_frame(table)
        slug = t.name.replace(".", "_")
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / f"{slug}.csv")
        png = heatmap_png(table, folder / f"{slug}.png")
        view = Table(title=escape(f"{t.name} on {the_task.name}: {table.loss_kind} loss vs the teacher "
                                  f"({table.seconds:.1f} s to measure)"), title_justify="left")  # fmt: skip
        view.add_column(f"layer \\ {table.knob}")
        for c in table.candidates:
            view.add_column(escape(str(c)), justify="right")
        for name, row in frame.iterrows():
            view.add_row(escape(str(name)), *(f"{v:.2e}" for v in row))
        console.print(view)
        console.print(f"wrote {folder / (slug + '.csv')} and {png}", markup=False, highlight=False)
