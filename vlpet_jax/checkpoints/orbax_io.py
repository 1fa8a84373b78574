"""Training checkpoints with Orbax: trainable params, optimiser state, step, data-iterator
position and config, and never the frozen backbone (it is re-read from its source).

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save leaves every older step intact; `latest_step` only sees finished steps.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from vlpet_jax.train.step import TrainState

STATE, DATA, CONFIG = "state", "data", "config"


class TrainCheckpointer:
    """Save/restore `TrainState` + JSON side data in `<workdir>/checkpoints/<step>/`."""

    def __init__(self, workdir: str | os.PathLike, max_to_keep: int = 3):
        self.directory = os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=(STATE, DATA, CONFIG),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: TrainState,
        data_state: dict[str, Any] | None,
        config: dict[str, Any],
        force: bool = False,
    ) -> bool:
        saved = self.manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    STATE: ocp.args.StandardSave(state),
                    DATA: ocp.args.JsonSave(data_state or {}),
                    CONFIG: ocp.args.JsonSave(config),
                }
            ),
            force=force,
        )
        return bool(saved)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(
        self, abstract_state: TrainState, step: int | None = None
    ) -> tuple[TrainState, dict[str, Any], dict[str, Any], int]:
        """(state, data_state, config, step) of `step` (default: the latest finished one).

        `abstract_state` gives shapes, dtypes and shardings (e.g. from `jax.eval_shape` with
        shardings attached), so each host reads only its shards.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no finished checkpoint to restore")
        if step not in self.all_steps():
            raise FileNotFoundError(
                f"{self.directory}: no checkpoint for step {step}; found {self.all_steps()}"
            )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    STATE: ocp.args.StandardRestore(abstract_state),
                    DATA: ocp.args.JsonRestore(),
                    CONFIG: ocp.args.JsonRestore(),
                }
            ),
        )
        return restored[STATE], restored[DATA], restored[CONFIG], step

    def close(self) -> None:
        self.manager.close()


def abstract_like(state: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays (`restore`'s target, compile inputs)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        state,
    )
