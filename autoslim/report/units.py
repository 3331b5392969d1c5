"""Numbers in the units people read: accuracy in %, drops in pp, sizes in KB/MB, times in ms/µs, ratios as 4.2x.

Every function takes what a journal may hold (a number, None, NaN, text) and returns "–" for anything that is not a
finite number, so a damaged or missing value never breaks a report.

>>> percent(0.98312), drop_pp(0.0042), size(12830), duration_ms(0.0412), ratio(14.03)
('98.31%', '0.42 pp', '12.8 KB', '41.2 µs', '14.0x')
"""

from __future__ import annotations

import math

import numpy as np

MISSING = "–"


def number(value: object) -> float | None:
    """A finite number, or None (bools are not numbers here: a journal flag is never a cost)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if not isinstance(value, (int, float)):
        try:  # numpy scalars and numeric strings from a CSV
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    v = float(value)
    return v if math.isfinite(v) else None


def percent(fraction: object, digits: int = 2) -> str:
    v = number(fraction)
    return MISSING if v is None else f"{v * 100:.{digits}f}%"


def drop_pp(drop: object) -> str:
    """An accuracy drop (baseline minus trial, as a fraction) in percentage points; negative is a gain."""
    v = number(drop)
    return MISSING if v is None else f"{v * 100:.2f} pp".replace("-", "−")


def size(n_bytes: object) -> str:
    """Decimal units (1 KB = 1000 B), as flash and file sizes are quoted on datasheets and by `ls -lh --si`."""
    v = number(n_bytes)
    if v is None:
        return MISSING
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}" if abs(v) < 100 * scale else f"{v / scale:.0f} {unit}"
    return f"{v:.0f} B"


def duration_ms(ms: object) -> str:
    v = number(ms)
    if v is None:
        return MISSING
    if abs(v) >= 1000:
        return f"{v / 1000:.3g} s"
    if abs(v) >= 1 or v == 0:
        return f"{v:.3g} ms"
    if abs(v) >= 1e-3:
        return f"{v * 1e3:.3g} µs"
    return f"{v * 1e6:.3g} ns"


def energy_mj(mj: object) -> str:
    v = number(mj)
    if v is None:
        return MISSING
    return f"{v:.3g} mJ" if abs(v) >= 1 or v == 0 else f"{v * 1e3:.3g} µJ"


def count(n: object) -> str:
    """A count with SI prefixes past a million (MACs, parameters): 1.23 M, 4.5 G."""
    v = number(n)
    if v is None:
        return MISSING
    for unit, scale in (("G", 1e9), ("M", 1e6)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:,.0f}"


def ratio(x: object) -> str:
    v = number(x)
    return MISSING if v is None else f"{v:.1f}x" if v < 100 else f"{v:.0f}x"


def seconds(s: object) -> str:
    v = number(s)
    if v is None:
        return MISSING
    if v >= 3600:
        return f"{int(v // 3600)} h {int(v % 3600 // 60)} min"
    return f"{int(v // 60)} min {v % 60:.0f} s" if v >= 60 else f"{v:.1f} s"


def cost(field: str, value: object) -> str:
    """A cost of a profile (a ``COST_FIELDS`` name) in its unit."""
    if field.endswith("latency_ms"):
        return duration_ms(value)
    if field.endswith("bytes"):
        return size(value)
    if field == "energy_mj":
        return energy_mj(value)
    if field == "macs":
        return count(value)
    return MISSING if value is None else str(value)


COST_WORDS = {"latency_ms": "latency", "model_bytes": "model size", "peak_activation_bytes": "peak activations",
              "energy_mj": "energy", "macs": "MACs", "measured_latency_ms": "measured latency"}  # fmt: skip
BETTER = {"latency_ms": "faster", "model_bytes": "smaller", "peak_activation_bytes": "less activation memory",
          "energy_mj": "less energy", "measured_latency_ms": "faster"}  # fmt: skip


def gain(field: str, reduction: object) -> str:
    """Baseline ÷ trial as words: '14.0x smaller', '3.2x faster'."""
    text = ratio(reduction)
    return text if text == MISSING else f"{text} {BETTER.get(field, 'lower ' + field)}"
