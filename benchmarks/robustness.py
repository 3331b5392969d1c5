"""The robustness table of issue 11: every case in tests/robustness/, its category, and how it came out.

Each test is one case, tagged with the kind of failure it guards against (what the case did before the fix):

* ``security``: a study folder acting on the machine (test_security_*.py, or a ``test_security_*`` function);
* ``data loss``: finished work lost or a study made unusable (test_storage_*, test_journal_*, test_lock_*.py, or
  ``test_dataloss_*``);
* ``crash``: a traceback instead of a message (``test_crash_*``);
* ``poor``: a misleading or missing message, accepted nonsense (``test_poor_*``, and anything untagged).

A passing test is ``good``; a failing one counts under its category (a crash still crashes, a leak still leaks).

    python benchmarks/robustness.py [-k EXPR]

Writes results/benchmarks/robustness.csv (case, category, outcome, seconds) and prints the tally:
cases tried, good, poor, crash, data loss, security (and skipped, with the reason where a server is missing).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "robustness.csv"
CATEGORIES = ("poor", "crash", "data loss", "security")
BY_FILE = {"test_security_": "security", "test_storage_": "data loss", "test_journal_": "data loss",
           "test_lock_": "data loss"}  # fmt: skip
BY_NAME = {"test_security_": "security", "test_dataloss_": "data loss", "test_crash_": "crash", "test_poor_": "poor"}


def category(module: str, name: str) -> str:
    for prefix, cat in BY_NAME.items():
        if name.startswith(prefix):
            return cat
    file = module.rsplit(".", 1)[-1]
    return next((cat for prefix, cat in BY_FILE.items() if file.startswith(prefix)), "poor")


def outcome(case: ET.Element, cat: str) -> str:
    if case.find("skipped") is not None:
        return "skipped"
    if case.find("failure") is not None or case.find("error") is not None:
        return cat
    return "good"


def run_cases(extra: list[str]) -> list[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "robustness.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/robustness", "-q", "-rA", "-p", "no:cacheprovider",
               f"--junitxml={xml}", *extra]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=False)
        if not xml.exists():
            raise SystemExit("pytest wrote no report; see its output above")
        rows = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            module, name = case.get("classname", ""), case.get("name", "")
            cat = category(module, name)
            rows.append({"case": f"{module.rsplit('.', 1)[-1]}::{name}", "category": cat,
                         "outcome": outcome(case, cat), "seconds": f"{float(case.get('time', 0)):.2f}"})  # fmt: skip
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", help="pytest -k expression (a subset of the cases)")
    args = parser.parse_args()
    rows = run_cases(["-k", args.k] if args.k else [])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "category", "outcome", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    tally = Counter(r["outcome"] for r in rows)
    tried = len(rows) - tally["skipped"]
    by_cat = Counter(r["category"] for r in rows if r["outcome"] != "skipped")
    print(f"\ncases tried {tried} · good {tally['good']} · " + " · ".join(f"{c} {tally[c]}" for c in CATEGORIES)
          + f" · skipped {tally['skipped']}")  # fmt: skip
    print("cases per category: " + ", ".join(f"{c} {by_cat[c]}" for c in CATEGORIES))
    print(f"wrote {OUT.relative_to(ROOT)}")
    if any(tally[c] for c in CATEGORIES):
        sys.exit(1)


if __name__ == "__main__":
    main()
