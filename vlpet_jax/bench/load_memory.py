"""Load time and peak memory of reading a base-size Hugging Face checkpoint with our loader.

Each measurement runs in a fresh subprocess so the peak resident memory belongs to loading alone;
the checkpoint's size on disk is the yardstick (a loader that held two copies would peak near 2x).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from vlpet_jax.bench.decode_speed import BASE_SIZES, make_hf_model

_CHILD = r"""
import json, sys, time
from vlpet_jax.bench.timing import current_rss_mib, peak_rss_since_reset_mib, reset_peak_rss
import jax, jax.numpy as jnp
from vlpet_jax.checkpoints.hf import load_backbone
jax.numpy.zeros(1).block_until_ready()   # runtime start-up is not part of loading
baseline = current_rss_mib()
reset_peak_rss()
start = time.perf_counter()
cfg, params = load_backbone(sys.argv[1])
jax.block_until_ready(params)
seconds = time.perf_counter() - start
n = sum(x.size for x in jax.tree.leaves(params))
print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_since_reset_mib(),
                  "baseline_rss_mib": baseline,
                  "params": int(n)}))
"""


def run(family: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as path:
        model = make_hf_model(family, BASE_SIZES[family], path)
        del model
        weights = os.path.join(path, "model.safetensors")
        file_mib = os.path.getsize(weights) / 2**20
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, path],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    growth = result["peak_rss_mib"] - result["baseline_rss_mib"]
    return {
        "benchmark": "load",
        "family": family,
        "size": "base",
        "params": result["params"],
        "checkpoint_mib": round(file_mib, 1),
        "load_seconds": round(result["seconds"], 2),
        "peak_rss_growth_mib": round(growth, 1),
        "peak_over_checkpoint": round(growth / file_mib, 2),
    }
