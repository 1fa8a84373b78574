"""`vlpet_jax.inspect`: parameter-tree inspection (implemented in `vlpet_jax.train.inspect`)."""

from vlpet_jax.train.inspect import (
    GateValues,
    ParamRow,
    ParamSummary,
    collapse_layers,
    gate_modules,
    gate_values,
    is_buffer,
    summarize,
    summary,
    summary_from_config,
)

__all__ = [
    "GateValues",
    "ParamRow",
    "ParamSummary",
    "collapse_layers",
    "gate_modules",
    "gate_values",
    "is_buffer",
    "summarize",
    "summary",
    "summary_from_config",
]
