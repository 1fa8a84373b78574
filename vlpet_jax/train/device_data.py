"""Host NumPy batches -> global jax.Arrays on the mesh (single- or multi-host).

Training: each host holds its own rows of the global batch (the data pipeline slices per host);
`from_host_shards` stitches them into one array sharded over (data, fsdp).
Evaluation: every host builds the whole (small) global batch, so predictions need no gathering;
`from_full_batch` gives each device its rows of that batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from vlpet_jax.train import sharding

# Keys the host pipeline produces that the device never needs (none today: `task_ids` feeds
# HyperFormer's task embedding).
HOST_ONLY: frozenset[str] = frozenset()


def _device_arrays(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in batch.items() if k not in HOST_ONLY}


def _placement(value: np.ndarray, mesh: Mesh) -> jax.sharding.Sharding:
    """Batch arrays split their rows over (data, fsdp); scalars are replicated."""
    return sharding.batch_sharding(mesh, value.ndim) if value.ndim else sharding.replicated(mesh)


def from_host_shards(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    out = {}
    for key, value in _device_arrays(batch).items():
        out[key] = jax.make_array_from_process_local_data(_placement(value, mesh), value)
    return out


def abstract_host_shards(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """What `from_host_shards` will make of `batch` (shapes, dtypes, shardings), without making
    it: for compiling ahead. Single-process only, where the host's rows are the global batch."""
    if jax.process_count() != 1:
        raise ValueError("abstract_host_shards needs the global batch: single-process runs only")
    out = {}
    for key, value in _device_arrays(batch).items():
        dtype = jax.dtypes.canonicalize_dtype(value.dtype)
        out[key] = jax.ShapeDtypeStruct(value.shape, dtype, sharding=_placement(value, mesh))
    return out


def from_full_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    out = {}
    for key, value in _device_arrays(batch).items():
        spec = _placement(value, mesh)
        out[key] = jax.make_array_from_callback(value.shape, spec, lambda index, v=value: v[index])
    return out


def fetch(array: jax.Array) -> np.ndarray:
    """A replicated (or fully addressable) array as NumPy on this host."""
    if array.is_fully_addressable:
        return np.asarray(array)
    return np.asarray(array.addressable_data(0))
