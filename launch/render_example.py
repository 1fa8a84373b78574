r"""Render an example of the built-in benchmark (e.g. the demo's data) to image files to ask about.

    python -m launch.render_example --data demo_run/data --task vqa --out demo_run/ask --name scene

writes `demo_run/ask/scene.png` (NLVR2: `scene_0.png`, `scene_1.png`; TVQA / How2QA: a folder of
frames) and prints the example's question and its `launch.predict` command.
"""

from __future__ import annotations

import json
import shlex

from absl import app, flags

_DATA = flags.DEFINE_string("data", None, "the benchmark's root (synthetic_benchmark.json)")
_TASK = flags.DEFINE_enum(
    "task", "vqa", ["vqa", "gqa", "nlvr", "caption", "tvqa", "how2qa"], "which split to take"
)
_INDEX = flags.DEFINE_integer("index", 0, "example number in the validation split")
_OUT = flags.DEFINE_string("out", ".", "output directory")
_NAME = flags.DEFINE_string("name", None, "file name stem (default: the benchmark's ids)")
_WORKDIR = flags.DEFINE_string("workdir", "RUN", "run to put in the printed predict command")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _DATA.value:
        raise app.UsageError("missing required flag: --data")
    from vlpet_jax.inference.render import render_example

    example = render_example(_DATA.value, _TASK.value, _INDEX.value, _OUT.value, _NAME.value)
    print(json.dumps(example))
    command = ["python", "-m", "launch.predict", f"--workdir={_WORKDIR.value}",
               f"--task={_TASK.value}"]  # fmt: skip
    command += [f"--image={path}" for path in example.get("images", [])]
    command += [f"--video={path}" for path in example.get("videos", [])]
    for field in ("question", "statement", "ts"):
        if field in example:
            command.append(f"--{field}={example[field]}")
    if "choices" in example:
        command.append(f"--choices={'|'.join(example['choices'])}")
    print(" ".join(shlex.quote(part) for part in command))


if __name__ == "__main__":
    app.run(main)
