"""report.html of a real (tiny) search, opened in headless Chromium: every Plotly plot draws, the console stays
clean, nothing is fetched from elsewhere, clicks and sorting work. Skipped, saying why, where Chromium is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from autoslim.report.results import StudyResults
from tests.report.browser import Browser, PageLoad, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="Chromium not found: `apt-get install chromium` (Debian) runs the browser tests"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def opened(browser: Browser, tiny_search: StudyResults) -> PageLoad:
    return browser.open(tiny_search.folder / "report.html")


def test_every_plot_draws_with_a_clean_console_and_nothing_fetched(
    opened: PageLoad, tiny_search: StudyResults, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_search.folder / "report.html"
    with capsys.disabled():
        print(f"\nreport.html of a {len(tiny_search.trials)}-trial search: {path.stat().st_size / 1e6:.2f} MB; "
              f"text shown {opened.first_paint_ms / 1000:.2f} s, first screen's plots drawn "
              f"{opened.first_view_ms / 1000:.2f} s, load event {opened.load_event_ms / 1000:.2f} s, all "
              f"{opened.plots} plots drawn {opened.all_drawn_ms / 1000:.2f} s")  # fmt: skip
    assert opened.plots == 1 + len(tiny_search.profiles) + 3  # fronts, each profile, parallel, importance, history
    assert opened.drawn == opened.plots
    assert opened.errors == []
    assert [u for u in opened.requests if not u.startswith(("file:", "data:"))] == []
    # a loaded shared machine opens it in seconds; this bound only catches a page that hangs
    assert opened.load_event_ms < 30_000
    # the page marks its first screen drawn, then every plot (those below it drawn after the load event)
    assert 0 < opened.first_view_ms <= opened.all_drawn_ms


def test_a_click_on_a_point_jumps_to_its_trial_row(browser: Browser, opened: PageLoad) -> None:
    browser.evaluate("location.hash = ''")
    browser.evaluate("document.getElementById('fig-profile-0').emit('plotly_click', {points: [{customdata: 2}]})")
    assert browser.evaluate("location.hash") == "#trial-2"
    assert browser.evaluate("document.querySelector('tr:target').id") == "trial-2"


def test_tables_sort_by_the_number_not_its_text(browser: Browser, opened: PageLoad) -> None:
    column = "[...document.querySelectorAll('table.trials tbody tr')].map(r => r.cells[{i}].dataset.sort)"
    header = "document.querySelectorAll('table.trials th')[{i}]"
    index = browser.evaluate("[...document.querySelectorAll('table.trials th')].findIndex(h => h.textContent.trim() "
                             "=== 'parameters')")  # fmt: skip
    browser.evaluate(header.format(i=index) + ".click()")
    values = [float(v) for v in browser.evaluate(column.format(i=index)) if v]
    assert values == sorted(values)
    browser.evaluate(header.format(i=index) + ".click()")  # again: the other way
    values = [float(v) for v in browser.evaluate(column.format(i=index)) if v]
    assert values == sorted(values, reverse=True)


def test_the_search_wrote_trials_csv_for_pandas(tiny_search: StudyResults) -> None:
    csv = pd.read_csv(tiny_search.folder / "trials.csv")
    assert "gpu-a100.latency_ms_per_batch64" in csv.columns and "gpu-a100.macs_per_batch64" in csv.columns
    assert any(c.startswith("params_") for c in csv.columns) and "n_params" in csv.columns
    assert csv["accuracy_drop_pp"].iloc[0] == 0.0 and csv["datetime_complete"].notna().all()
