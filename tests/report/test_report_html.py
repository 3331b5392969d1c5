"""report.html on a hand-made study: self-contained and offline, the summary and its commands, every trial's row,
failures grouped by reason, settings from what the study stores, numbers in their units."""

from __future__ import annotations

from html.parser import HTMLParser

import optuna
import pytest
from plotly.offline import get_plotlyjs

from autoslim.report.explore import importances
from autoslim.report.failures import failure_groups
from autoslim.report.html import build_html, write_html
from autoslim.report.pick import Query, pick
from autoslim.report.results import StudyResults
from autoslim.report.settings import NOT_RECORDED, settings_rows
from autoslim.report.summary import best_points
from tests.report.conftest import PROFILES, TRIALS


class Links(HTMLParser):
    """Every src / href in the page, and the ids (script bodies are data to this parser, never tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)
            if name == "id" and value:
                self.ids.add(value)


def parse(page: str) -> Links:
    links = Links()
    links.feed(page)
    return links


def external(urls: list[str]) -> list[str]:
    """What a browser would fetch from elsewhere: anything but an in-page anchor or inline data."""
    return [u for u in urls if not u.startswith(("#", "data:"))]


@pytest.fixture
def page(handmade: StudyResults) -> str:
    return build_html(handmade)


def test_self_contained_plotly_inlined_once(page: str) -> None:
    links = parse(page)
    assert external(links.urls) == []
    assert "link" not in links.tags and "iframe" not in links.tags
    assert page.count(get_plotlyjs()[:300]) == 1  # the library once
    divs = page.count('class="plotly-graph-div"')
    assert divs == 1 + len(PROFILES) + 3  # all fronts, one per profile, parallel coordinates, importance, history
    assert page.count("window.autoslimFigures || []).push(") == divs  # each drawn once the library is parsed
    assert page.index(get_plotlyjs()[:300]) > page.index('id="settings"')  # after the text: the text shows first


def test_every_trial_has_a_row_that_links_and_clicks_land_on(page: str) -> None:
    links = parse(page)
    assert {f"trial-{n}" for n in range(len(TRIALS))} <= links.ids
    assert {f"#trial-{n}" for n in (0, 1, 2, 3)} <= set(links.urls)  # front points link to their rows
    assert "plotly_click" in page and "location.hash = 'trial-' + p.customdata" in page
    assert {"summary", "fronts", "explore", "trials", "failures", "settings"} <= links.ids
    assert all(f"profile-{p.name}" in links.ids for p in PROFILES)
    assert all(f"#{i}" in links.urls for i in ("summary", "trials", "settings"))  # the navigation bar


def test_numbers_in_their_units(page: str) -> None:
    assert "95.00%" in page and "0.50 pp" in page and "4.0x faster" in page and "4.0x smaller" in page
    assert "1 MB" in page and "250 KB" in page and "250 µs" in page  # baseline 1,000,000 B; trial 2 at 0.25 ms
    assert "0.983" not in page and "e+0" not in page.split("<body>")[1].split("<script")[0]


def test_summary_best_within_1_and_2_pp_with_commands(handmade: StudyResults, page: str) -> None:
    fronts = {p.name: handmade.front(p.name) for p in PROFILES}
    bests = {(b.profile.name, b.drop): int(b.row["trial"]) for b in best_points(handmade.trials, fronts, PROFILES)
             if b.row is not None}  # fmt: skip
    assert bests[("x86-avx512-vnni", 0.01)] == 1 and bests[("x86-avx512-vnni", 0.02)] == 2
    folder = str(handmade.folder)
    assert f"autoslim pick {folder} --profile x86-avx512-vnni --max-accuracy-drop 0.01" in page
    assert (f"autoslim export {folder} --trial 1 --task mnist1d-cnn --format onnx-int8 --out "
            "deploy/x86-avx512-vnni") in page  # fmt: skip
    assert "Baseline (trial 0, uncompressed)" in page


@pytest.mark.parametrize("profile", [p.name for p in PROFILES])
def test_the_summary_agrees_with_autoslim_pick(handmade: StudyResults, profile: str) -> None:
    fronts = {p.name: handmade.front(p.name) for p in PROFILES}
    for best in best_points(handmade.trials, fronts, PROFILES):
        if best.profile.name == profile:
            chosen = pick(handmade, profile, Query(max_accuracy_drop=best.drop))
            assert (None if chosen.row is None else int(chosen.row["trial"])) == (
                None if best.row is None else int(best.row["trial"])
            )


def test_failures_grouped_by_reason_stopped_under_both_words(handmade: StudyResults, page: str) -> None:
    groups = {(g.status, len(g.trials)): g for g in failure_groups(handmade.trials)}
    assert set(groups) == {("infeasible", 2), ("stopped", 2), ("failed", 1)}
    assert groups[("failed", 1)].reason == "RuntimeError: boom"  # first line only
    assert groups[("stopped", 2)].trials == (7, 8)  # "pruned", the word of older studies, is "stopped" too
    assert "2 stopped (early stop)" in page and "Traceback" not in page.split('id="failures"')[1]


def test_settings_from_what_the_study_stores(handmade: StudyResults) -> None:
    rows = dict(settings_rows(handmade.study, handmade.trials))
    assert rows["task"] == "mnist1d-cnn" and rows["search space"] == "default"
    assert rows["seed"].startswith("0 ")  # trial n ran with seed + n
    assert rows["budget"] == NOT_RECORDED and rows["library versions"].startswith(NOT_RECORDED)
    assert "optuna" in rows["library versions"] and rows["device"] == "cpu"
    handmade.study.set_user_attr("run", {"budget": 50, "sampler": "tpe", "wall_s": 170.0, "versions": {"torch": "2"}})
    rows = dict(settings_rows(handmade.study, handmade.trials))
    assert (rows["budget"], rows["sampler"], rows["wall time"], rows["library versions"]) == (
        "50",
        "tpe",
        "2 min 50 s (the latest run: teacher, preflight and reports included)",
        "torch 2",
    )


def test_importance_per_objective_or_a_note_why_not(handmade: StudyResults) -> None:
    table, note = importances(handmade.study, PROFILES)
    assert list(table.columns) == ["accuracy", *(f"{p.name}: {p.objective}" for p in PROFILES)], note
    assert "prune.structured.ratio" in table.index
    assert table.sum().round(6).isin([0.0, 1.0]).all()
    empty = optuna.create_study(directions=["maximize"] * 4)  # nothing finished: too few trials, said so
    table, note = importances(empty, PROFILES)
    assert table.empty and "at least 4" in note


def test_write_html_writes_report_html(handmade: StudyResults) -> None:
    path = write_html(handmade)
    assert path.endswith("report.html") and (handmade.folder / "report.html").stat().st_size > 1_000_000


def test_nan_inf_and_missing_values_never_break_the_report(handmade: StudyResults) -> None:
    """Trials recorded `ok` with NaN / inf / missing accuracy and costs (an old or hand-edited journal)."""
    import math

    from autoslim.report.frame import trials_frame
    from autoslim.report.write import write_report
    from tests.report.conftest import costs

    study = handmade.study
    odd = [(math.nan, 1.0), (math.inf, 1.0), (0.5, math.nan), (0.5, math.inf), (None, None), (-math.inf, 0.0)]
    for accuracy, cost in odd:
        spoiled = {p: {**c, "latency_ms": cost, "model_bytes": cost} for p, c in costs(1.0).items()}
        attrs = {"status": "ok", "accuracy": accuracy, "costs": spoiled, "plan_words": "odd", "plan": {"steps": []}}
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=attrs))
    results = StudyResults(handmade.folder, study, PROFILES, trials_frame(study, PROFILES))
    write_report(results.folder, results.trials, PROFILES)
    page = build_html(results)
    tables = page.split("<body>", 1)[1].split("<script", 1)[0]
    cells = [c.split("</td>", 1)[0] for c in tables.split("<td")[1:]]
    assert not [c for c in cells if c.rsplit(">", 1)[-1].strip().lower() in ("nan", "inf", "-inf", "nan%", "none")]
    assert f"trial-{len(TRIALS) + len(odd) - 1}" in parse(page).ids
