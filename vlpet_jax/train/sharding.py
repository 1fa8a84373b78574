"""Device mesh and the one table that maps logical axis names to mesh axes.

Every parameter carries logical axis names (`nn.with_logical_partitioning` in the models); this
file turns them into `NamedSharding`s for a mesh with axes (data, fsdp, tensor). Shardings are
derived from abstract shapes (`jax.eval_shape`), so nothing is allocated to decide placement.
A mesh axis that does not divide a dimension is dropped for that leaf (it stays replicated along
that axis) rather than failing: tiny CPU models and odd vocabularies still run on any mesh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# (logical name, mesh axis or axes or None). First match wins; unnamed dims are replicated.
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("joined_kv", "tensor"),
    ("heads", "tensor"),
    ("embed", "fsdp"),
    ("vis_feat", "fsdp"),
    ("length", None),
    ("kv_length", None),
    ("relpos_buckets", None),
    ("abspos", None),
    ("pet_rank", None),
)


def make_mesh(shape: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one size may be -1 ("all remaining devices")."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh {dict(shape)}: at most one axis may be -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {dict(shape)}: {len(devices)} devices not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, "
            f"found {len(devices)}"
        )
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def _mesh_axes(logical: Any, rules: Sequence[tuple[str, Any]]) -> Any:
    if logical is None:
        return None
    for name, axes in rules:
        if name == logical:
            return axes
    return None


def spec_for(
    shape: Sequence[int], logical_names: Sequence[Any], mesh: Mesh, rules=LOGICAL_RULES
) -> P:
    """PartitionSpec for one array: logical names -> mesh axes, dropping non-dividing axes and
    mesh axes already used by an earlier dimension."""
    used: set[str] = set()
    spec = []
    for dim, logical in zip(shape, logical_names):
        axes = _mesh_axes(logical, rules)
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        kept = []
        size = 1
        for axis in axes:
            if axis in used or mesh.shape[axis] == 1:
                continue
            if dim % (size * mesh.shape[axis]) == 0:
                kept.append(axis)
                size *= mesh.shape[axis]
        used.update(kept)
        spec.append(tuple(kept) if len(kept) > 1 else (kept[0] if kept else None))
    return P(*spec)


def param_shardings(abstract_boxed: Any, mesh: Mesh, rules=LOGICAL_RULES) -> Any:
    """NamedShardings for an abstract param tree whose leaves are `nn.LogicallyPartitioned`
    (as `jax.eval_shape(model.init, ...)` returns them). The result has the unboxed structure."""

    def one(leaf):
        if isinstance(leaf, nn.LogicallyPartitioned):
            names, value = leaf.names, leaf.value
        else:
            names, value = (None,) * len(leaf.shape), leaf
        return NamedSharding(mesh, spec_for(value.shape, names, mesh, rules))

    return jax.tree.map(
        one, abstract_boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading (batch) dimension over data×fsdp, the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
