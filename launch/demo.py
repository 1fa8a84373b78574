"""The built-in demo: synthetic benchmark -> a tiny backbone pretrained on text, then on images
and captions (no task's images) -> frozen -> PET methods -> results.

    python -m launch.demo --workdir demo_run

Writes `<workdir>/results.md` and `results.json` (trainable %, each task's metric, examples/s, a
text-only baseline, the frozen vision-and-language backbone with no tuning, and the wall time of
each stage), `stage_times.json`, `results_by_question_type.md` (each run's VQA/GQA/NLVR2 score per question
type next to the text-only guess's), `training_curves.png` and `gate_heatmap.png`. Re-running reuses what is
already there (data, pretrained checkpoints, finished runs).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "demo_run", "where everything is written")
_METHODS = flags.DEFINE_list(
    "methods", ["vl_pet_large", "vl_pet_small", "vl_adapter", "lora", "full_ft"],
    "PET methods trained on the first backbone",
)  # fmt: skip
_BACKBONES = flags.DEFINE_list(
    "backbones", ["t5_tiny"], "tiny backbone presets (bart_tiny: see README, 'The demo')"
)
_EPOCHS = flags.DEFINE_integer("epochs", 2, "training epochs per method")
_PRETRAIN_STEPS = flags.DEFINE_integer("pretrain_steps", 400, "denoising pre-training steps")
_VL_EPOCHS = flags.DEFINE_integer(
    "vl_pretrain_epochs", 5, "vision-and-language (captioning) pre-training epochs"
)
_SEED = flags.DEFINE_integer("seed", 0, "seed of the benchmark, the pre-training and every run")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    import jax
    import numpy as np

    from vlpet_jax.data import synthetic
    from vlpet_jax.data.multitask import eval_batches
    from vlpet_jax.demo import breakdown, pipeline, report
    from vlpet_jax.inspect import gate_values, summary_from_config
    from vlpet_jax.train.trainer import Run, train, trained_params

    started = time.perf_counter()
    workdir = os.path.abspath(_WORKDIR.value)
    # XLA programs persist under the workdir: a re-run (another --seed, another method list) and
    # runs that share a program (the untuned evaluation and full_ft's) compile it once.
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    options = pipeline.DemoOptions(
        workdir=workdir,
        backbones=tuple(_BACKBONES.value),
        methods=tuple(_METHODS.value),
        epochs=_EPOCHS.value,
        pretrain_steps=_PRETRAIN_STEPS.value,
        vl_pretrain_epochs=_VL_EPOCHS.value,
        seed=_SEED.value,
    )
    stages = pipeline.StageTimes(os.path.join(workdir, "stage_times.json"))
    data_root = os.path.join(workdir, "data")
    with stages.timed("synthetic benchmark"):
        manifest = synthetic.ensure_benchmark(
            data_root, seed=options.seed, kind="image", **options.synthetic_sizes
        )
    print(f"[demo] synthetic benchmark at {data_root}: {manifest['examples']}", flush=True)

    rows, run_dirs = [], {}
    text_only = pipeline.text_only_guesses(data_root)
    baseline = pipeline.text_only_baseline(data_root, text_only)
    rows.append({"run": "text-only baseline", **baseline})
    val_examples = {}
    by_type = {"text-only": {}}
    for task, (examples, guesses) in text_only.items():
        val_examples[task] = examples
        by_type["text-only"].update(breakdown.scores_by_question_type(task, examples, guesses))
    for index, backbone in enumerate(options.backbones):
        try:
            with stages.timed(f"{backbone} text pretraining"):
                text_checkpoint = pipeline.prepare_text_checkpoint(backbone, data_root, options)
            with stages.timed(f"{backbone} vision-and-language pretraining"):
                checkpoint = pipeline.prepare_vl_checkpoint(backbone, text_checkpoint, options)
        except pipeline.RunInterrupted as stopped:
            print(f"[demo] {stopped}", flush=True)
            sys.exit(143)  # 128 + SIGTERM, as if the signal had ended the process
        name = f"{backbone}/no tuning"
        run_dir = os.path.join(workdir, "runs", backbone, "no_tuning")
        with stages.timed(name):
            metrics = pipeline.train_or_reuse(
                run_dir,
                functools.partial(
                    pipeline.evaluate_untuned, backbone, checkpoint, data_root, options, run_dir
                ),
            )
        rows.append({"run": name, "trainable_percent": 0.0, **metrics})
        by_type[name] = {}
        for task, predictions in breakdown.final_predictions(run_dir).items():
            by_type[name].update(
                breakdown.scores_by_question_type(task, val_examples[task], predictions)
            )
        methods = options.methods if index == 0 else options.second_backbone_methods
        for method in methods:
            name = f"{backbone}/{method}"
            run_dir = os.path.join(workdir, "runs", backbone, method)
            config = pipeline.run_config(backbone, method, checkpoint, data_root, options)

            def train_run(config=config, run_dir=run_dir, name=name):  # only if not yet finished
                print(f"[demo] training {name}", flush=True)
                return train(config, run_dir)

            try:
                with stages.timed(name):
                    metrics = pipeline.train_or_reuse(run_dir, train_run)
            except pipeline.RunInterrupted as stopped:
                print(f"[demo] {stopped}", flush=True)
                sys.exit(143)  # 128 + SIGTERM, as if the signal had ended the process
            # Parameter counts from shapes alone: restoring a run's parameters (a model init and
            # a checkpoint read, ~10-20 s here) is paid only for the gate heat-map below.
            counts = summary_from_config(config)
            rows.append(
                {
                    "run": name,
                    "trainable_percent": counts.trainable_percent,
                    "examples_per_s": pipeline.examples_per_second(run_dir),
                    **metrics,
                }
            )
            run_dirs[name] = run_dir
            by_type[name] = {}
            for task, predictions in breakdown.final_predictions(run_dir).items():
                by_type[name].update(
                    breakdown.scores_by_question_type(task, val_examples[task], predictions)
                )
            if method == "vl_pet_large" and index == 0:
                run = Run(config, run_dir, with_eval=True)
                params, _ = trained_params(run)
                source = run.data.eval_sources["vqa"]
                batch = next(eval_batches(source, run.data.collator)).arrays
                gates = gate_values(run.model, params, batch)
                # One row per encoder layer and sub-layer (self-attention, FFN), layer-major.
                kinds = [k for k in ("self_attn", "ff") if k in gates.kinds("encoder")]
                per_kind = {kind: gates.per_channel(kind) for kind in kinds}
                layers = gates.layers("encoder")
                label = {"self_attn": "self-attention", "ff": "FFN"}
                report.plot_gate_heatmap(
                    np.stack([per_kind[k][i] for i in range(len(layers)) for k in kinds]),
                    [f"encoder layer {i} {label[k]}" for i in layers for k in kinds],
                    os.path.join(workdir, "gate_heatmap.png"),
                    f"{name}: gate G per channel, mean over a VQA batch",
                )
    report.plot_training_curves(run_dirs, os.path.join(workdir, "training_curves.png"))
    table = report.results_table(rows)
    times = report.stage_table(stages.seconds)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table + "\n\n" + times + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(workdir, "results_by_question_type.md"), "w") as f:
        f.write(breakdown.breakdown_table(by_type) + "\n")
    print(table)
    print(times)
    print(
        f"[demo] done in {time.perf_counter() - started:.0f} s; wrote results.md, results.json, "
        "results_by_question_type.md, training_curves.png, gate_heatmap.png under "
        f"{workdir} (devices: {jax.devices()[0]})"
    )


if __name__ == "__main__":
    app.run(main)
