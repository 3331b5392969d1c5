"""Wording the commands share: reasons cut at a word (never mid-word), counts in words, "x smaller / slower".

Numbers themselves go through :mod:`autoslim.report.units` (%, pp, KB, µs), as in report.html.
"""

from __future__ import annotations

from autoslim.report import units

WORSE = {"latency_ms": "slower", "model_bytes": "larger", "energy_mj": "more energy"}


def shorten(text: object, width: int = 100) -> str:
    """The first non-empty line of ``text``, cut at a word boundary with an ellipsis when longer than ``width``."""
    line = next((part.strip() for part in str(text or "").splitlines() if part.strip()), "")
    if len(line) <= width:
        return line
    cut = line[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:") + "…"


def counts(values: dict[str, int]) -> str:
    """``{"infeasible": 2, "stopped": 1}`` as words, most first: "2 infeasible, 1 stopped"."""
    return ", ".join(f"{n} {name}" for name, n in sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))


def versus(baseline: object, value: object, field: str) -> str:
    """How ``value`` compares with the baseline's: "43.6x smaller", "1.1x slower", "same"."""
    b, v = units.number(baseline), units.number(value)
    if b is None or v is None or b <= 0 or v <= 0:
        return units.MISSING
    if round(b / v, 2) == 1:
        return "same"
    if b > v:
        return units.gain(field, b / v)
    return f"{units.ratio(v / b)} {WORSE.get(field, 'higher')}"
