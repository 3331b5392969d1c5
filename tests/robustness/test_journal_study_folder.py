"""A study folder holds exactly one study, the one it is named for; a resume searches the space it began with."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import optuna
import pytest

from autoslim.search import run_search
from autoslim.search.journal import StudyFolderError
from autoslim.search.space_check import SpaceChangedError
from autoslim.search.study import finished_count
from tests.conftest import write_space
from tests.robustness.conftest import FAST_SPACE, assert_one_line_error, cli_search, fast_config

pytestmark = pytest.mark.usefixtures("study_env")


def _storage(journal: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))


def test_copied_folder_is_refused_with_what_to_do_and_nothing_forks(tmp_path: Path, fast_space_file: Path) -> None:
    results = tmp_path / "results"
    run_search(fast_config(results, 2, study="a"))
    shutil.copytree(results / "a", results / "b")
    journal = results / "b" / "study.journal"
    data = journal.read_bytes()

    with pytest.raises(StudyFolderError, match="holds study 'a', not 'b': the folder was copied or renamed"):
        run_search(fast_config(results, 3, study="b"))
    out = cli_search(results, fast_space_file, 3, study="b")
    assert out.exit_code == 2
    assert_one_line_error(out.output, str(journal), "'a'", "'b'", "Name the folder 'a' again", "--warm-start")
    assert journal.read_bytes() == data  # no second study appended: the copy is not forked
    assert optuna.get_all_study_names(_storage(journal)) == ["a"]
    # what the message proposes works: a new study that begins from the copy's fronts
    outcome = run_search(fast_config(results, 3, study="c", warm_start=results / "b"))
    assert outcome.ran == 3


def test_journal_holding_two_studies_is_refused(tmp_path: Path, fast_space_file: Path) -> None:
    results = tmp_path / "results"
    run_search(fast_config(results, 2))
    journal = results / "s" / "study.journal"
    optuna.create_study(study_name="forked", storage=_storage(journal))  # what an older autoslim did to a copy
    data = journal.read_bytes()
    with pytest.raises(StudyFolderError, match=r"holds 2 studies \('s', 'forked'\); a study folder holds exactly"):
        run_search(fast_config(results, 3))
    out = cli_search(results, fast_space_file, 3)
    assert out.exit_code == 2
    assert_one_line_error(out.output, str(journal), "2 studies")
    assert journal.read_bytes() == data


def test_changed_space_on_resume_is_refused_with_the_differences(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run_search(fast_config(results, 3))
    edited = copy.deepcopy(FAST_SPACE)
    edited["techniques"]["quantize"]["params"]["weight_bits"] = {"choice": [2, 4, 8]}
    edited["techniques"]["prune.unstructured"]["params"]["amount"] = {"float": [0.1, 0.9]}
    edited["techniques"]["prune.structured"] = {"params": {"ratio": {"float": [0.2, 0.5]}}}
    with pytest.raises(SpaceChangedError) as err:
        run_search(fast_config(results, 5, space=edited))
    message = str(err.value)
    assert message.startswith("fast.yaml: study 's' began with another version of space 'fast' (")
    assert "quantize.weight_bits: was choice [4, 8], now choice [2, 4, 8]" in message
    assert "prune.unstructured.amount: was float [0.3, 0.8], now float [0.1, 0.9]" in message
    assert "prune.structured: new in the space (choice [True, False])" in message
    assert "prune.structured.ratio: new in the space (float [0.2, 0.5])" in message
    study = optuna.load_study(study_name="s", storage=_storage(results / "s" / "study.journal"))
    assert len(study.get_trials()) == 3 and finished_count(study) == 3  # refused before any new trial


def test_changed_space_via_the_cli_exits_2_naming_the_file(tmp_path: Path, fast_space_file: Path) -> None:
    results = tmp_path / "results"
    assert cli_search(results, fast_space_file, 2).exit_code == 0
    edited = copy.deepcopy(FAST_SPACE)
    edited["techniques"]["quantize"]["params"]["weight_bits"] = {"choice": [2, 8]}
    out = cli_search(results, write_space(tmp_path / "edited.yaml", edited), 4)
    assert out.exit_code == 2
    assert_one_line_error(out.output, str(tmp_path / "edited.yaml"), "quantize.weight_bits: was choice [4, 8]")


def test_older_study_without_stored_space_is_checked_against_its_trials(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run_search(fast_config(results, 4))
    study = optuna.load_study(study_name="s", storage=_storage(results / "s" / "study.journal"))
    study.set_user_attr("space_distributions", None)  # as a study from before the attr existed
    edited = copy.deepcopy(FAST_SPACE)
    edited["techniques"]["quantize"]["params"]["weight_bits"] = {"choice": [2, 4, 8]}
    with pytest.raises(SpaceChangedError, match=r"quantize.weight_bits: was choice \[4, 8\], now choice \[2, 4, 8\]"):
        run_search(fast_config(results, 5, space=edited))
    assert run_search(fast_config(results, 5)).ran == 1  # the unchanged space resumes
