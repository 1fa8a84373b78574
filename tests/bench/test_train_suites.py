"""The train, optstate and scaling suites end to end at tiny sizes (1 repetition): records with
the expected keys, the JSON / Markdown / PNG outputs, and the launcher's `--merge`."""

import json
import os
import subprocess
import sys

import pytest

from vlpet_jax.bench import plot, report, train_step
from vlpet_jax.bench.flops import Shapes

SHAPES = Shapes(batch_size=2, text_len=6, vis_len=4, target_len=3)
TRAIN_KEYS = {
    "family", "size", "variant", "batch_size", "tokens_in_out", "examples_per_s", "step_ms",
    "peak_rss_growth_mib", "xla_memory_mib", "model_gflop", "achieved_gflop_s",
}  # fmt: skip
SUMMARY_KEYS = {
    "bf16_over_torch", "fp32_over_torch", "bf16_over_peft", "fp32_over_peft",
    "pet_fp32_over_full_ft_time", "pet_bf16_over_full_ft_time", "mfu_fp32", "mfu_bf16",
    "pet_gflop_analytic", "pet_gflop_jaxpr", "pet_gflop_xla", "loss_ours_fp32", "loss_torch",
    "loss_rel_diff", "loss_ours_bf16", "loss_bf16_rel_diff", "tolerances",
}  # fmt: skip
SCALING_KEYS = {
    "family", "size", "variant", "sweep", "batch_size", "text_len", "step_ms", "examples_per_s",
    "model_gflop", "achieved_gflop_s", "mfu",
}  # fmt: skip


def test_train_suite_writes_records_table_and_plot(tmp_path):
    variants = ("ours_bf16", "torch_vl_pet")  # PEFT LoRA: test_torch_parity
    records = train_step.run_train(
        "bart", "tiny", SHAPES, repeats=1, variants=variants, isolate=False,
        fast_compile=True, matmul_size=128,
    )  # fmt: skip
    runs = [r for r in records if r["benchmark"] == "train"]
    assert [r["variant"] for r in runs] == list(variants)
    for r in runs:
        assert r.keys() >= TRAIN_KEYS
        assert r["examples_per_s"] > 0 and r["step_ms"] > 0
    (summary,) = [r for r in records if r["benchmark"] == "train_summary"]
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["bf16_over_torch"] > 0
    assert summary["fp32_over_torch"] is None and summary["bf16_over_peft"] is None  # not run
    assert summary["loss_rel_diff"] <= train_step.FP32_RTOL
    records = train_step.matmul_records(128) + records
    out = tmp_path / "results.json"
    md = report.write_results(records, {"cpu": "test", "cores": 1, "python": "3"}, str(out))
    assert json.loads(out.read_text())["records"] == records
    with open(md) as f:
        table = f.read()
    assert "**train_summary**" in table and "bf16_over_torch" in table
    png = plot.write_plot(records, str(tmp_path / "results.png"))
    assert os.path.getsize(png) > 0


def test_scaling_suite_one_point():
    (record,) = train_step.run_scaling(
        "t5", "tiny", batch_sizes=(2,), text_lengths=(6,), repeats=1, base=SHAPES,
        fast_compile=True, matmul_size=128,
    )  # fmt: skip
    assert record.keys() >= SCALING_KEYS
    assert record["benchmark"] == "scaling" and record["mfu"] > 0


def test_optstate_shares():
    records = train_step.run_optstate(["bart"], "tiny", methods=["vl_pet_large", "lora"])
    shares = {r["method"]: r["pct_of_full_ft"] for r in records}
    assert set(shares) == {"vl_pet_large", "lora", "full_ft"}
    assert shares["full_ft"] == 100.0
    assert 0 < shares["vl_pet_large"] < 100 and 0 < shares["lora"] < 100


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown train variants"):
        train_step.run_train("bart", "tiny", SHAPES, variants=["jax_magic"])


def test_launcher_merges_suites(tmp_path):
    out = tmp_path / "results.json"
    old = [
        {"benchmark": "decode", "speedup": 1.0},
        {"benchmark": "optstate", "family": "bart", "method": "lora"},
        {"benchmark": "optstate", "family": "t5", "stale": True},
    ]
    out.write_text(json.dumps({"machine": {}, "records": old}))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, "-m", "launch.benchmark", "--suites=optstate", "--families=t5",
         "--train_size=tiny", "--optstate_methods=vl_pet_large", "--merge", f"--out={out}"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    records = json.loads(out.read_text())["records"]
    assert records[:2] == old[:2]  # other suites' and other families' records kept
    assert not any(r.get("stale") for r in records)  # this suite's for this family replaced
    new = {r["method"] for r in records if r["benchmark"] == "optstate" and r["family"] == "t5"}
    assert new == {"vl_pet_large", "full_ft"}
    assert os.path.exists(tmp_path / "results.md")


def test_merge_replaces_by_suite_family_and_size(tmp_path):
    from vlpet_jax.bench.report import merge_records

    out = tmp_path / "results.json"
    old = [
        {"benchmark": "decode", "family": "bart", "size": "tiny", "speedup": 4.1},
        {"benchmark": "decode", "family": "bart", "size": "base", "speedup": 1.0},
        {"benchmark": "decode", "family": "t5", "size": "base", "speedup": 1.1},
        {"benchmark": "matmul", "jax_fp32_gflops": 200.0},
    ]
    out.write_text(json.dumps({"machine": {}, "records": old}))
    new = [{"benchmark": "decode", "family": "bart", "size": "base", "speedup": 1.2}]
    merged = merge_records(str(out), new)
    # Only the record of the same suite, family and size is replaced.
    assert merged == [old[0], old[2], old[3], new[0]]


def test_results_are_readable_by_everyone(tmp_path):
    from vlpet_jax.bench.report import atomic_write_text

    path = tmp_path / "results.md"
    atomic_write_text(str(path), "x\n")
    assert path.read_text() == "x\n"
    assert os.stat(path).st_mode & 0o777 == 0o644
