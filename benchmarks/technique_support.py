"""Which technique works on which kind of model: the support matrix over the test zoo.

Runs every registered technique (default config; ``tests.zoo.CONTRACT_PARAMS`` for a few) through ``run_trial``
on every tiny zoo model and records ok / infeasible / failed with the reason and the size effect. Writes
``results/benchmarks/technique_support.csv`` and the Markdown table in ``docs/techniques.md`` (between the
support-matrix markers, so the rest of that page is left alone); prints the table.

    python benchmarks/technique_support.py
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the zoo lives in tests/, which is not an installed package

import torch  # noqa: E402

from autoslim.cost import builtin_profiles, estimate_cost  # noqa: E402
from autoslim.techniques import list_techniques  # noqa: E402
from tests.zoo import ZOO, make_task, trial_of  # noqa: E402

CSV_PATH = ROOT / "results" / "benchmarks" / "technique_support.csv"
DOC_PATH = ROOT / "docs" / "techniques.md"
START, END = "<!-- support-matrix:start -->", "<!-- support-matrix:end -->"
BYTES_PROFILE = "x86-avx512-vnni"  # the profile whose model bytes the table quotes

DOC_INTRO = """# Techniques

Which compression technique works on which kind of model. Each cell is one `run_trial` of a one-step plan
with the technique's default config (distillation: 1 epoch) on a tiny randomly initialised model of the test zoo
(`tests/zoo.py`): **ok** with the parameters and model bytes left (on `{profile}`) relative to the uncompressed
model, or **infeasible** (the technique refused the model, with the reason listed below the table). The contract
suite `tests/techniques/test_contract_zoo.py` checks the same pairs. Regenerate with
`python benchmarks/technique_support.py`.

"""


def measure() -> list[dict[str, object]]:
    torch.set_num_threads(1)
    profiles = tuple(builtin_profiles().values())
    quoted = (
        next(p for p in profiles if p.name == BYTES_PROFILE)
        if BYTES_PROFILE in {p.name for p in profiles}
        else profiles[0]
    )
    rows: list[dict[str, object]] = []
    for technique in list_techniques():
        for model_name in ZOO:
            task = make_task(model_name)
            teacher = task.teacher()
            params_before = sum(p.numel() for p in teacher.parameters())
            bytes_before = estimate_cost(teacher, task.example_inputs, quoted).model_bytes
            t0 = time.perf_counter()
            result = trial_of(technique, task, profiles)
            ok = result.status == "ok"
            rows.append(
                {
                    "technique": technique,
                    "model": model_name,
                    "status": result.status,
                    "params_before": params_before,
                    "params_after": result.params if ok else "",
                    "model_bytes_before": bytes_before,
                    "model_bytes_after": result.costs[quoted.name]["model_bytes"] if ok else "",
                    "bytes_profile": quoted.name,
                    "seconds": round(time.perf_counter() - t0, 3),
                    "reason": result.reason.strip().splitlines()[0] if result.reason else "",
                }
            )
    return rows


def _cell(row: dict[str, object]) -> str:
    if row["status"] != "ok":
        return str(row["status"])
    params = int(row["params_after"]) / int(row["params_before"])  # type: ignore[call-overload]
    size = int(row["model_bytes_after"]) / int(row["model_bytes_before"])  # type: ignore[call-overload]
    return f"ok · {params:.0%} params · {size:.0%} bytes"


def markdown(rows: list[dict[str, object]]) -> str:
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    techniques = list(dict.fromkeys(str(r["technique"]) for r in rows))
    by_pair = {(r["technique"], r["model"]): r for r in rows}
    lines = ["| technique | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for t in techniques:
        lines.append(f"| `{t}` | " + " | ".join(_cell(by_pair[(t, m)]) for m in models) + " |")
    refused = [r for r in rows if r["status"] != "ok"]
    if refused:
        lines += ["", "Reasons:", ""]
        lines += [f"- `{r['technique']}` on `{r['model']}` ({r['status']}): {r['reason']}" for r in refused]
    return "\n".join(lines) + "\n"


def write(rows: list[dict[str, object]]) -> str:
    CSV_PATH.parent.mkdir(parents=True, exist_ok=True)
    with CSV_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    block = f"{START}\n{table}{END}\n"
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    text = DOC_PATH.read_text() if DOC_PATH.exists() else DOC_INTRO.format(profile=BYTES_PROFILE) + block
    if START in text and END in text:
        head, _, rest = text.partition(START)
        text = head + block + rest.partition(END)[2].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    DOC_PATH.write_text(text)
    return table


if __name__ == "__main__":
    print(write(measure()))
    print(f"wrote {CSV_PATH.relative_to(ROOT)} and {DOC_PATH.relative_to(ROOT)}")
