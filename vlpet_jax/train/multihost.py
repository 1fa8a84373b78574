"""Joining a multi-host job: `jax.distributed.initialize` from the launchers' flags.

With `--multihost` alone, JAX detects the coordinator from the cluster (TPU VM metadata, SLURM,
Open MPI, or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables). The
explicit `--coordinator_address/--num_processes/--process_id` serve everything else (a plain set of
machines, or two processes on one host in a test); whatever is not given is still detected.
"""

from __future__ import annotations

import jax


def initialize(
    multihost: bool,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Call `jax.distributed.initialize` when asked to (`multihost` or any explicit argument);
    returns whether it was called. Must run before anything touches a jax backend."""
    explicit = (coordinator_address, num_processes, process_id)
    if not multihost and all(value is None for value in explicit):
        return False
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True
