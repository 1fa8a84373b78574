"""What trains, how many, where: parameter-tree tables and VL-PET gate read-outs.

    summary = vlpet_jax.inspect.summary(params, config)       # a real (or abstract) tree
    summary = vlpet_jax.inspect.summary_from_config(config)   # shapes only: seconds, no memory
    print(summary.format())
    trainable params: 6052416 || all params: 145606464 || trainable%: 4.1567   (VL-PET large, BART)

Counting follows SPEC.md §4: every parameter of the model, including the PET modules and the
grown vocabulary; the tied token table counted once (it is one leaf here). BART's
`final_logits_bias` is excluded: in PyTorch it is a registered *buffer*, not a parameter, so the
paper's percentages do not count it. We keep it as a (frozen) leaf so it travels with the tree, and
the table lists it as a buffer.

Rows collapse layer indices (`backbone/encoder_layers_*/pet_ff/mod/down/kernel`) and carry the
instance count, shape, trainability, dtype and logical sharding axes (the names the parameters
were created with; a rules table maps them to mesh axes).

Gates: `gate_modules(params)` lists the granularity gates (`pet_*/gate` scopes, e.g. VL-PET's
`GatedModification`); `gate_values(model, params, batch)` runs the model once and collects the G
each gate sowed (`intermediates/.../gate_values`), arranged by layer for heat-maps.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.traverse_util import flatten_dict

from vlpet_jax.pet.trainability import Rules, trainable_paths

# Leaves that are buffers in the PyTorch reference: listed, never counted (SPEC.md §4).
BUFFER_PATHS = (r"backbone/final_logits_bias",)
_LAYER_INDEX = re.compile(r"(?<=(layers|blocks)_)\d+(?=/|$)")


def collapse_layers(path: str) -> str:
    """`backbone/encoder_layers_3/pet_ff/...` -> `backbone/encoder_layers_*/pet_ff/...`."""
    return _LAYER_INDEX.sub("*", path)


def is_buffer(path: str) -> bool:
    return any(re.fullmatch(p, path) for p in BUFFER_PATHS)


@dataclasses.dataclass(frozen=True)
class ParamRow:
    """Parameters sharing one collapsed path, shape, trainability, dtype and axes."""

    pattern: str
    instances: int  # how many leaves (layers) the pattern stands for
    shape: tuple[int, ...]
    count: int  # parameters over all instances
    trainable: bool
    dtype: str
    axes: tuple[str | None, ...]  # logical axis name per dimension (None: replicated)
    buffer: bool = False  # a PyTorch buffer: shown, not counted


@dataclasses.dataclass(frozen=True)
class ParamSummary:
    rows: tuple[ParamRow, ...]
    trainable: int
    total: int
    buffers: int  # elements of buffer leaves, not included in `total`
    title: str = ""

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def line(self) -> str:
        """The peft-style line of DESIGN.md "Inspection"."""
        return (
            f"trainable params: {self.trainable} || all params: {self.total} || "
            f"trainable%: {self.trainable_percent:.4f}"
        )

    def format(self, table: bool = True) -> str:
        """The per-module table (optional) followed by the count line."""
        lines = [self.title] if self.title else []
        if table:
            lines += _table(self.rows)
            if self.buffers:
                lines.append(f"(buffers, not counted: {self.buffers} elements)")
        lines.append(self.line())
        return "\n".join(lines)


def _table(rows: Sequence[ParamRow]) -> list[str]:
    header = ("path", "n", "shape", "params", "status", "dtype", "axes")
    body = [
        (
            r.pattern,
            str(r.instances),
            "x".join(map(str, r.shape)) or "scalar",
            f"{r.count:,}",
            "buffer" if r.buffer else ("train" if r.trainable else "frozen"),
            r.dtype,
            "(" + ", ".join(a or "-" for a in r.axes) + ")",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    right = {1, 3}  # numeric columns

    def fmt(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)]


def _flat(tree: Any) -> dict[str, Any]:
    return flatten_dict(dict(tree), sep="/")


def _logical_axes(boxed: Any) -> dict[str, tuple[str | None, ...]]:
    """Logical axis names per leaf from the `LogicallyPartitioned` boxes (one per dimension)."""
    specs = nn.get_partition_spec(boxed)
    flat = flatten_dict(dict(specs), sep="/")
    return {path: tuple(spec) if spec is not None else () for path, spec in flat.items()}


def _has_boxes(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    return any(isinstance(leaf, nn.Partitioned) for leaf in leaves)


def summarize(
    params: Any, rules: Rules, axes: Mapping[str, tuple[str | None, ...]], title: str = ""
) -> ParamSummary:
    """Rows and counts of `params` (arrays or shapes, unboxed) under trainability `rules`."""
    flat = _flat(params)
    decision = trainable_paths(params, rules)
    groups: dict[tuple, list[int]] = {}
    for path, leaf in flat.items():
        shape = tuple(int(d) for d in leaf.shape)
        key = (
            collapse_layers(path),
            shape,
            decision[path],
            str(np.dtype(leaf.dtype)),
            tuple(axes.get(path, ())),
            is_buffer(path),
        )
        groups.setdefault(key, []).append(int(np.prod(shape, dtype=np.int64)))
    rows = tuple(
        ParamRow(pattern, len(sizes), shape, sum(sizes), trainable, dtype, ax, buffer)
        for (pattern, shape, trainable, dtype, ax, buffer), sizes in groups.items()
    )
    total = sum(r.count for r in rows if not r.buffer)
    trainable = sum(r.count for r in rows if r.trainable and not r.buffer)
    buffers = sum(r.count for r in rows if r.buffer)
    return ParamSummary(rows, trainable, total, buffers, title)


def _title(config: Any) -> str:
    source = config.model.checkpoint or "preset"
    return f"{config.pet.method} on {config.model.backbone} ({source})"


def summary(params: Any, config: Any) -> ParamSummary:
    """Counts and rows of a parameter tree built for `config` (`init_params`, a restored
    checkpoint, or `abstract_params`). Axis names come from the tree's boxes when it has them,
    otherwise from the config's abstract shapes."""
    from vlpet_jax import api

    if _has_boxes(params):
        axes = _logical_axes(params)
        params = nn.unbox(params)
    else:
        axes = _logical_axes(api.abstract_variables(config)["params"])
    return summarize(params, api.trainability_rules(config), axes, _title(config))


def summary_from_config(config: Any) -> ParamSummary:
    """`summary` from abstract shapes: no weights are read or allocated."""
    from vlpet_jax import api

    boxed = api.abstract_variables(config)["params"]
    rules = api.trainability_rules(config)
    params = api.cast_frozen(nn.unbox(boxed), rules, api.dtype_of(config.model.frozen_dtype))
    return summarize(params, rules, _logical_axes(boxed), _title(config))


# ------------------------------------------------------------------------------------ gates

_GATE_SCOPE = re.compile(r"(.*/pet_[^/]+)/gate/.+")
_GATE_SITE = re.compile(r"(?:.*/)?(encoder|decoder)_layers_(\d+)/pet_([^/]+)/gate_values")


def gate_modules(params: Any) -> list[str]:
    """Paths of every granularity gate (`<...>/pet_<site>/gate`) in a parameter tree."""
    found: dict[str, None] = {}
    for path in _flat(nn.unbox(params)):
        match = _GATE_SCOPE.fullmatch(path)
        if match:
            found[f"{match.group(1)}/gate"] = None
    return list(found)


@dataclasses.dataclass(frozen=True)
class GateValues:
    """G of every gate from one forward pass, by sowing module path.

    Each value has the gate's own broadcast shape (SPEC.md §3): large (B, N, d), middle_x
    (B, N, 1), middle_y (1, 1, d), small (B, 1, 1). The helpers reduce them to 2-D arrays with
    one row per layer, ready for `plt.imshow`.
    """

    values: dict[str, np.ndarray]

    def sites(self) -> list[tuple[str, int, str, str]]:
        """(stack, layer, sub-layer kind, path) of every gate that sits in a numbered layer."""
        out = []
        for path in self.values:
            match = _GATE_SITE.fullmatch(path)
            if match:
                out.append((match.group(1), int(match.group(2)), match.group(3), path))
        return sorted(out)

    def kinds(self, stack: str = "encoder") -> list[str]:
        return sorted({kind for s, _, kind, _ in self.sites() if s == stack})

    def layers(self, stack: str = "encoder") -> list[int]:
        return sorted({layer for s, layer, _, _ in self.sites() if s == stack})

    def _lookup(self, stack: str) -> dict[tuple[int, str], np.ndarray]:
        return {(layer, kind): self.values[p] for s, layer, kind, p in self.sites() if s == stack}

    def mean_matrix(self, stack: str = "encoder") -> np.ndarray:
        """(layers, kinds): mean G per layer and sub-layer (columns in `kinds()` order);
        NaN where a layer has no gate of that kind."""
        lookup, layers, kinds = self._lookup(stack), self.layers(stack), self.kinds(stack)
        out = np.full((len(layers), len(kinds)), np.nan, np.float32)
        for i, layer in enumerate(layers):
            for j, kind in enumerate(kinds):
                if (layer, kind) in lookup:
                    out[i, j] = float(np.mean(lookup[(layer, kind)]))
        return out

    def per_channel(self, kind: str, stack: str = "encoder") -> np.ndarray:
        """(layers, d or 1): G averaged over batch and tokens, per hidden channel."""
        lookup = self._lookup(stack)
        rows = [lookup[(layer, kind)] for layer in self.layers(stack) if (layer, kind) in lookup]
        return np.stack([r.reshape(-1, r.shape[-1]).mean(axis=0) for r in rows])

    def per_token(self, kind: str, stack: str = "encoder") -> np.ndarray:
        """(layers, N or 1): G averaged over batch and channels, per token position."""
        lookup = self._lookup(stack)
        rows = [lookup[(layer, kind)] for layer in self.layers(stack) if (layer, kind) in lookup]
        return np.stack([r.mean(axis=(0, 2)) for r in rows])


def gate_values(model: nn.Module, params: Any, batch: Mapping[str, Any]) -> GateValues:
    """Run `model` on `batch` (eval mode) and collect the sowed `gate_values` of every gate."""

    @jax.jit
    def forward(params: Any, arrays: dict[str, Any]) -> Any:
        return model.apply({"params": params}, arrays, train=False, mutable=["intermediates"])

    # Only arrays reach the model (pipeline batches may carry example ids or strings).
    _, state = forward(params, {k: v for k, v in batch.items() if hasattr(v, "shape")})
    flat = flatten_dict(dict(state.get("intermediates", {})), sep="/")
    values = {}
    for path, sown in flat.items():
        if path.endswith("gate_values"):
            # `sow` appends one entry per call; the model calls each gate once per forward.
            values[path] = np.asarray(sown[-1] if isinstance(sown, tuple) else sown)
    if not values:
        raise ValueError(
            "the model sowed no 'gate_values': its PET method has no granularity gates "
            "(VL-PET and the '+g_<level>' variants do)"
        )
    return GateValues(values)
