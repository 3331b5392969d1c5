"""The static PNG clips nothing silently: far-off trials sit under a marked axis break, trials with nothing to
draw are counted, and front points carry their trial numbers."""

from __future__ import annotations

import io

import pytest
from matplotlib.figure import Figure

from autoslim.report import plots
from autoslim.report.frame import front_frame
from autoslim.report.results import StudyResults
from tests.report.conftest import PROFILES

X86 = PROFILES[0]


def draw(results: StudyResults, monkeypatch: pytest.MonkeyPatch, df=None) -> Figure:
    """plot_front's figure, kept open to look at."""
    kept: list[Figure] = []
    monkeypatch.setattr(plots.plt, "close", kept.append)
    df = results.trials if df is None else df
    buf = io.BytesIO()
    plots.plot_front(df, front_frame(df, X86), X86, buf)
    assert buf.getvalue().startswith(b"\x89PNG")
    return kept[0]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def test_a_far_off_trial_is_drawn_under_a_marked_break(handmade: StudyResults, monkeypatch: pytest.MonkeyPatch) -> None:
    fig = draw(handmade, monkeypatch)
    main, low = fig.axes
    assert main.get_ylim()[0] >= 80 and low.get_ylim()[0] < 40 < low.get_ylim()[1]  # trial 3 at 40 %
    assert any("1 trial(s) below" in t and "40.0%" in t for t in texts(fig))
    assert not main.spines["bottom"].get_visible()  # the break marks replace the axis line


def test_trials_with_nothing_to_draw_are_counted(handmade: StudyResults, monkeypatch: pytest.MonkeyPatch) -> None:
    note = [t for t in texts(draw(handmade, monkeypatch)) if t.startswith("not drawn")]
    assert note == ["not drawn (no accuracy or cost): 2 infeasible, 2 stopped (early stop), 1 failed"]


def test_front_points_carry_their_trial_numbers(handmade: StudyResults, monkeypatch: pytest.MonkeyPatch) -> None:
    front = front_frame(handmade.trials, X86)["trial"].tolist()
    assert {str(n) for n in front} <= set(texts(draw(handmade, monkeypatch)))


def test_without_far_off_trials_one_panel(handmade: StudyResults, monkeypatch: pytest.MonkeyPatch) -> None:
    near = handmade.trials[handmade.trials["trial"] != 3]
    fig = draw(handmade, monkeypatch, near)
    assert len(fig.axes) == 1 and fig.axes[0].get_ylim()[0] <= 89  # every drawn trial (down to 90 %) in view
