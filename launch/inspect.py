r"""Print what trains, how many, and where, from abstract shapes (no weights, seconds).

    python -m launch.inspect --config configs/image_text.py:backbone=bart_base,method=vl_pet_large
    python -m launch.inspect --config configs/video_text.py:backbone=t5_base,method=lora \
        --config.pet.lora_rank=64 --notable

Run it as a module (`-m`): as a script, this file's directory would shadow the standard library's
`inspect`. The last line is `trainable params: N || all params: M || trainable%: P`.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and arguments, e.g. configs/image_text.py:backbone=t5_base"
)
_TABLE = flags.DEFINE_bool("table", True, "Print the per-module table before the count line.")
_GATES = flags.DEFINE_bool("gates", False, "Also list the granularity gate modules.")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from vlpet_jax import api
    from vlpet_jax.train import inspect as vl_inspect

    config = _CONFIG.value
    result = vl_inspect.summary_from_config(config)
    if _GATES.value:
        gates = vl_inspect.gate_modules(api.abstract_variables(config)["params"])
        print(f"gate modules ({len(gates)}):")
        for path in gates:
            print(f"  {path}")
    print(result.format(table=_TABLE.value))


if __name__ == "__main__":
    app.run(main)
