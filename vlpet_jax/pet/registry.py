"""PET methods by name: each supplies the hooks it attaches and its default trainability rules.

    @register("vl_pet_large")
    def _(backbone, pet) -> PetMethod: ...

`get_method(name, backbone_cfg, pet_cfg)` builds the method for one backbone; unknown and
duplicate names fail with the list of known names (STYLE.md: a registry, not if/elif).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.pet.trainability import Rules


@dataclasses.dataclass(frozen=True)
class PetMethod:
    name: str
    hooks: PetHooks
    # Ordered (regex, trainable) over full paths such as "backbone/encoder_layers_0/...".
    rules: Rules
    description: str = ""
    # Weight-decay rules placed before the family's released set (`rules.released_decay_rules`),
    # for leaves whose released names decide differently than their paths suggest.
    decay_exceptions: Rules = ()


Factory = Callable[[BackboneConfig, Mapping[str, Any]], PetMethod]
_REGISTRY: dict[str, Factory] = {}


def register(*names: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        for name in names:
            if name in _REGISTRY:
                raise ValueError(f"PET method {name!r} is registered twice")
            _REGISTRY[name] = factory
        return factory

    return add


def known_methods() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_method(
    name: str, backbone: BackboneConfig, pet: Mapping[str, Any] | None = None
) -> PetMethod:
    """The method `name` for `backbone`, sized by `pet` (a mapping of method hyper-parameters)."""
    _import_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown PET method {name!r}; known methods: {sorted(_REGISTRY)}")
    method = _REGISTRY[name](backbone, dict(pet or {}))
    return dataclasses.replace(method, name=name)


def _import_all() -> None:
    # Importing the method modules runs their @register decorators.
    from vlpet_jax.pet import methods  # noqa: F401
