"""The README benchmark summary: cells rendered from records, "n/a" for missing ones, and the
marker-delimited README rewrite that leaves the hand-written text untouched."""

import json
import os

import pytest

from vlpet_jax.bench import summary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MACHINE = {"cpu": "Test CPU", "cores": 2, "python": "3.11.7", "simd": "AVX-512", "jax": "0.1"}
COMMAND = "python -m launch.benchmark --suites=train,decode --sizes=base --merge"


def _train(variant: str, examples_per_s: float) -> dict:
    return {"benchmark": "train", "family": "bart", "size": "base", "variant": variant,
            "examples_per_s": examples_per_s}  # fmt: skip


def _bart_records() -> list[dict]:
    """BART-base only, shaped like `benchmarks/results.json`'s records."""
    return [
        {"benchmark": "matmul", "n": 2048, "jax_fp32_gflops": 275.6, "jax_bf16_gflops": 154.9,
         "torch_fp32_gflops": 307.9},
        _train("ours_fp32", 9.21), _train("ours_bf16", 8.35), _train("ours_full_ft", 6.07),
        _train("torch_vl_pet", 10.39), _train("peft_lora", 9.8),
        _train("ours_fp32", 1.0) | {"size": "tiny"},  # another size: must not be picked
        {"benchmark": "train_summary", "family": "bart", "size": "base", "fp32_over_torch": 0.89,
         "fp32_over_peft": 0.94, "pet_fp32_over_full_ft_time": 0.66, "mfu_fp32": 0.551,
         "loss_ours_fp32": 10.921759, "loss_torch": 10.921759, "loss_rel_diff": 0.0,
         "loss_bf16_rel_diff": 7.42e-06},
        {"benchmark": "optstate", "family": "bart", "size": "base", "method": "full_ft",
         "pct_of_full_ft": 100.0},
        {"benchmark": "optstate", "family": "bart", "size": "base", "method": "vl_pet_large",
         "pct_of_full_ft": 4.29},
        {"benchmark": "decode", "family": "bart", "size": "base", "search": "greedy",
         "ours_tokens_per_s": 244.1, "hf_generate_tokens_per_s": 241.0, "speedup": 1.01},
        {"benchmark": "decode", "family": "bart", "size": "base", "search": "beam5",
         "ours_tokens_per_s": 85.1, "hf_generate_tokens_per_s": 85.5, "speedup": 1.0},
        # T5 has only a greedy decode record: its other cells must read n/a.
        {"benchmark": "decode", "family": "t5", "size": "base", "search": "greedy",
         "ours_tokens_per_s": 159.9, "hf_generate_tokens_per_s": 158.0, "speedup": 1.01},
    ]  # fmt: skip


def _row(block: str, label_start: str) -> list[str]:
    """The cells after the label of the one table row whose label starts with `label_start`."""
    rows = [line for line in block.splitlines() if line.startswith(f"| {label_start}")]
    assert len(rows) == 1, (label_start, rows)
    return [cell.strip() for cell in rows[0].strip("|").split("|")][1:]


def test_summary_cells():
    block = summary.readme_summary(_bart_records(), MACHINE, COMMAND)
    assert block.startswith("Machine: Test CPU, 2 cores (AVX-512), Python 3.11.7, jax 0.1.\n")
    assert f"`{COMMAND}`" in " ".join(block.split())
    assert "| | BART-base | T5-base |" in block
    assert _row(block, "loss, ours fp32") == ["10.921759 = 10.921759", "n/a"]
    assert _row(block, "ours, frozen fp32") == ["9.21", "n/a"]
    assert _row(block, "ours, frozen bf16 (examples/s; loss within 1e-5 relative") == [
        "8.35", "n/a",
    ]  # fmt: skip
    assert _row(block, "ours, full fine-tuning") == ["6.07", "n/a"]
    assert _row(block, "PyTorch VL-PET") == ["10.39", "n/a"]
    assert _row(block, "PEFT LoRA") == ["9.80", "n/a"]
    assert _row(block, "ours / PyTorch reference") == ["0.89x, 0.94x", "n/a, n/a"]
    assert _row(block, "PET step") == ["0.66", "n/a"]
    assert _row(block, "model FLOPs utilisation") == ["55%", "n/a"]
    assert _row(block, "optimiser state") == ["4.29%", "n/a"]
    assert _row(block, "greedy decode") == ["244 / 241 (1.01x)", "160 / 158 (1.01x)"]
    assert _row(block, "beam-5 decode") == ["85 / 86 (1.00x)", "n/a"]
    assert "jax fp32 276 GFLOP/s" in block and "torch fp32 308 GFLOP/s" in block
    assert "bf16 (f32 accumulation) 155 GFLOP/s" in " ".join(block.split())


def test_summary_without_records_renders_na():
    block = summary.readme_summary([], {"cpu": "x", "cores": 1, "python": "3"}, COMMAND)
    assert "| | BART-base | T5-base |" in block
    assert _row(block, "ours, frozen fp32") == ["n/a", "n/a"]
    assert "No matmul-rate record" in block


README = """# Project

## Benchmarks

Some text.

<!-- benchmark-table -->
old block
old table
<!-- /benchmark-table -->

What they say today: hand-written.
"""


def test_replace_readme_block_keeps_outside_text():
    updated = summary.replace_readme_block(README, "new block\n")
    before, after = README.split("old block\nold table\n")
    assert updated == before + "new block\n" + after
    # Idempotent, and a block without a final newline still leaves the closing marker on its line.
    assert summary.replace_readme_block(updated, "new block\n") == updated
    assert summary.replace_readme_block(README, "new block") == updated


@pytest.mark.parametrize("marker", [summary.OPEN_MARKER, summary.CLOSE_MARKER])
def test_replace_readme_block_missing_marker(marker):
    broken = README.replace(marker + "\n", "")
    with pytest.raises(ValueError, match=r"docs/README\.md") as err:
        summary.replace_readme_block(broken, "x\n", "docs/README.md")
    assert marker in str(err.value)


def test_summary_of_committed_results():
    with open(os.path.join(REPO, "benchmarks", "results.json")) as f:
        results = json.load(f)
    block = summary.readme_summary(results["records"], results["machine"], COMMAND)
    bart_fp32 = [
        r for r in results["records"]
        if r["benchmark"] == "train" and r["family"] == "bart" and r["size"] == "base"
        and r["variant"] == "ours_fp32"
    ]  # fmt: skip
    assert bart_fp32, "benchmarks/results.json has no BART-base ours_fp32 train record"
    assert _row(block, "ours, frozen fp32")[0] == f"{bart_fp32[-1]['examples_per_s']:.2f}"
