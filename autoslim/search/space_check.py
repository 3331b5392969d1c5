"""A resumed study must search the space it began with.

Optuna fixes each parameter's distribution at its first trial; a resumed run whose space was edited under the
same name (choices added, a range moved) would otherwise make every new trial fail inside the sampler
("CategoricalDistribution does not support dynamic value space"). So the study stores its space's distributions
when it begins, and a resume compares them first and lists every difference. Studies from before this attr
existed are compared against the distributions their trials recorded.
"""

from __future__ import annotations

import json

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from autoslim.search.space import SearchSpace
from autoslim.search.study import StudyMismatchError

SPACE_ATTR = "space_distributions"


class SpaceChangedError(StudyMismatchError):
    """The space given now samples other distributions than the study's trials did."""

    exit_code = 2


def space_distributions(space: SearchSpace, profiles: tuple[str, ...] = ()) -> dict[str, BaseDistribution]:
    """Every parameter ``space.sample`` can suggest, with its distribution (all conditional branches)."""
    out: dict[str, BaseDistribution] = {}
    for t in space.techniques:
        if t.when == "optional":
            out[t.name] = CategoricalDistribution([True, False])
        specs = dict(t.params)
        if len(t.policies) > 1:
            out[f"{t.name}.policy"] = CategoricalDistribution(list(t.policies))
        if "sensitivity" in t.policies:
            specs["target"] = t.target
            choices = t.profile_choices(profiles)
            if len(choices) > 1:
                out[f"{t.name}.target_profile"] = CategoricalDistribution(list(choices))
        for p, spec in specs.items():
            name = f"{t.name}.{p}"
            if spec.kind == "choice":
                out[name] = CategoricalDistribution(list(spec.choices))
            elif spec.kind == "int":
                assert spec.low is not None and spec.high is not None
                out[name] = IntDistribution(int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
            elif spec.kind == "float":
                assert spec.low is not None and spec.high is not None
                out[name] = FloatDistribution(spec.low, spec.high, step=spec.step, log=spec.log)
    return out


def describe(d: BaseDistribution) -> str:
    if isinstance(d, CategoricalDistribution):
        return f"choice {list(d.choices)}"
    if isinstance(d, (IntDistribution, FloatDistribution)):
        kind = "int" if isinstance(d, IntDistribution) else "float"
        extra = (" log" if d.log else "") + (f" step {d.step}" if d.step not in (None, 1) else "")
        return f"{kind} [{d.low}, {d.high}]{extra}"
    return repr(d)


def _recorded(study: optuna.Study) -> tuple[dict[str, BaseDistribution], bool]:
    """The study's distributions, and whether they are complete (stored) or only those its trials sampled."""
    stored = study.user_attrs.get(SPACE_ATTR)
    if isinstance(stored, dict):
        return {k: json_to_distribution(v) for k, v in stored.items()}, True
    seen: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        for k, d in t.distributions.items():
            seen.setdefault(k, d)
    return seen, False


def check_space_unchanged(study: optuna.Study, space: SearchSpace, profiles: tuple[str, ...] = ()) -> None:
    """Store the space's distributions on a study's first run; on a resume, refuse any difference."""
    now = space_distributions(space, profiles)
    before, complete = _recorded(study)
    if not before and not complete:
        study.set_user_attr(SPACE_ATTR, {k: distribution_to_json(d) for k, d in now.items()})
        return
    diffs = [f"{k}: was {describe(before[k])}, now {describe(now[k])}" for k in sorted(before.keys() & now.keys())
             if json.loads(distribution_to_json(before[k])) != json.loads(distribution_to_json(now[k]))]  # fmt: skip
    diffs += [f"{k}: no longer in the space (was {describe(before[k])})" for k in sorted(before.keys() - now.keys())]
    if complete:
        diffs += [f"{k}: new in the space ({describe(now[k])})" for k in sorted(now.keys() - before.keys())]
    if diffs:
        raise SpaceChangedError(
            f"{space.source}: study {study.study_name!r} began with another version of space {space.name!r} "
            f"({'; '.join(diffs)}). Resume it with the space it began with, or start a new --study"
        )
    if not complete:  # an older study: from now on compare against the full space
        study.set_user_attr(SPACE_ATTR, {k: distribution_to_json(d) for k, d in now.items()})
