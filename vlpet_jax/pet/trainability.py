"""Trainability as data: ordered `(regex, trainable)` rules over '/'-joined parameter paths.

Each rule is matched with `re.fullmatch` (never a substring search), the first matching rule
decides, every parameter must be covered, and a rule that matches nothing is an error: it is
almost always a typo or a rule written for the other backbone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flax.traverse_util import flatten_dict, unflatten_dict

Rules = Sequence[tuple[str, bool]]


def param_paths(params: Any) -> list[str]:
    return ["/".join(map(str, k)) for k in flatten_dict(_as_dict(params))]


def _as_dict(params: Any) -> dict:
    return params.unfreeze() if hasattr(params, "unfreeze") else dict(params)


def rule_decisions(
    paths: Sequence[str],
    rules: Sequence[tuple[str, bool]],
    what: str = "trainability",
    dead_check_paths: Sequence[str] | None = None,
) -> dict[str, bool]:
    """`{path: decision}` by the first rule that full-matches each path.

    Raises when a path matches no rule, a rule is not a regex, or a rule decides no path and
    matches none of `dead_check_paths` either. Shared by trainability and weight decay (big_vision
    drives both from one kind of ordered list)."""
    compiled = []
    for index, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ValueError(
                f"{what} rule {index} is {rule!r}; expected a (regex, True/False) pair"
            )
        try:
            compiled.append((re.compile(rule[0]), bool(rule[1])))
        except re.error as err:
            raise ValueError(f"{what} rule {index} {rule[0]!r} is not a regex: {err}") from err
    used = [False] * len(compiled)
    decision: dict[str, bool] = {}
    uncovered = []
    for path in paths:
        for index, (regex, value) in enumerate(compiled):
            if regex.fullmatch(path):
                decision[path] = value
                used[index] = True
                break
        else:
            uncovered.append(path)
    if uncovered:
        raise ValueError(
            f"{len(uncovered)} parameters match no {what} rule (add a rule, e.g. "
            f"('.*', {rules[-1][1] if rules else False}) last): {uncovered[:10]}"
        )
    # A rule no path reaches (it matches none, or earlier rules take all it matches) is dead;
    # with `dead_check_paths`, one that matches any of those paths is not.
    extra = dead_check_paths or ()
    dead = [
        rules[i][0]
        for i, (regex, _) in enumerate(compiled)
        if not used[i] and not any(regex.fullmatch(p) for p in extra)
    ]
    if dead:
        raise ValueError(f"{what} rules that match no parameter: {dead}")
    return decision


def trainable_paths(params: Any, rules: Rules) -> dict[str, bool]:
    """`{path: trainable}` for every parameter; raises on uncovered params and dead rules."""
    return rule_decisions(param_paths(params), rules)


def trainable_mask(params: Any, rules: Rules) -> dict:
    """A tree of booleans with the structure of `params` (for `optax.masked` and friends)."""
    decision = trainable_paths(params, rules)
    return unflatten_dict({tuple(p.split("/")): v for p, v in decision.items()})


def split_params(params: Any, rules: Rules) -> tuple[dict, dict]:
    """(trainable, frozen): two disjoint nested dicts whose union is `params`."""
    decision = trainable_paths(params, rules)
    flat = flatten_dict(_as_dict(params))
    trainable = {k: v for k, v in flat.items() if decision["/".join(map(str, k))]}
    frozen = {k: v for k, v in flat.items() if not decision["/".join(map(str, k))]}
    return unflatten_dict(trainable), unflatten_dict(frozen)


def merge_params(trainable: Any, frozen: Any) -> dict:
    """Inverse of `split_params`; a path present in both is an error."""
    flat_trainable = flatten_dict(_as_dict(trainable))
    flat_frozen = flatten_dict(_as_dict(frozen))
    overlap = flat_trainable.keys() & flat_frozen.keys()
    if overlap:
        raise ValueError(f"parameters both trainable and frozen: {sorted(overlap)[:10]}")
    return unflatten_dict({**flat_frozen, **flat_trainable})
