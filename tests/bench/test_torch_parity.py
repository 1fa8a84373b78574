"""Our VL-PET-large model vs the independent PyTorch implementation of SPEC.md §2-§4 that the
train-step benchmark times (`vlpet_jax.bench.torch_reference`): same weights, same batch, same
logits and loss; same trainable set; the PyTorch train step really trains only that set."""

import jax
import numpy as np
import pytest
import torch

from vlpet_jax import api
from vlpet_jax.bench import torch_reference as ref
from vlpet_jax.bench import train_step
from vlpet_jax.bench.flops import Shapes
from vlpet_jax.pet.trainability import split_params

SHAPES = Shapes(batch_size=2, text_len=6, vis_len=4, target_len=3)


@pytest.fixture(scope="module", params=["bart", "t5"])
def setup(request, tmp_path_factory):
    family = request.param
    checkpoint = str(tmp_path_factory.mktemp(f"{family}_ckpt"))
    config = train_step.load_config(family, "tiny")
    train_step.save_hf_checkpoint(config, checkpoint)
    # Noise on every trainable leaf: T5's zero-initialised up projections take part too.
    params = train_step.perturb_trainable(
        train_step.ours_params(config, checkpoint, fast_compile=True), config
    )
    batch = train_step.make_batch(config, SHAPES, seed=1, pad_text=True)
    return family, checkpoint, config, params, batch


def _ours_logits(config, params, batch):
    model = api.build_model(config)
    apply = jax.jit(lambda p, b: model.apply({"params": p}, b, train=False))
    inputs = {k: batch[k] for k in train_step_model_keys(batch)}
    compiled = apply.lower(params, inputs).compile(train_step.FAST_COMPILE)
    return np.asarray(compiled(params, inputs))


def train_step_model_keys(batch):
    from vlpet_jax.train.step import MODEL_KEYS

    return [k for k in MODEL_KEYS if k in batch]


def test_same_logits_and_loss_on_the_same_weights(setup):
    _, checkpoint, config, params, batch = setup
    model, _ = train_step.torch_model("torch_vl_pet", config, checkpoint, train=False)
    loss_before = train_step.torch_eval_loss(model, batch)
    ref.load_trainable_from_flax(model, jax.device_get(params))
    with torch.no_grad():
        theirs = model(ref.torch_batch(batch)).numpy()
    ours = _ours_logits(config, params, batch)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=3e-5)
    loss_ours = train_step.ours_eval_loss(config, params, batch, fast_compile=True)
    loss_theirs = train_step.torch_eval_loss(model, batch)
    assert abs(loss_ours - loss_theirs) <= train_step.FP32_RTOL * abs(loss_theirs)
    # The copy mattered: the reference's own random PET weights give another loss.
    assert abs(loss_before - loss_theirs) > 1e-4


def test_check_parity_passes_and_reports(setup):
    family, checkpoint, *_ = setup
    result = train_step.check_parity(family, "tiny", checkpoint, SHAPES, fast_compile=True)
    assert result["loss_rel_diff"] <= train_step.FP32_RTOL
    assert result["loss_bf16_rel_diff"] <= train_step.BF16_RTOL
    assert result["loss_ours_fp32"] > 0


def test_same_trainable_set_and_only_it_trains(setup):
    _, checkpoint, config, params, batch = setup
    trainable, _ = split_params(params, api.trainability_rules(config))
    ours = sum(int(np.size(x)) for x in jax.tree.leaves(trainable))
    model, step = train_step.torch_model("torch_vl_pet", config, checkpoint, train=True)
    theirs = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == ours
    step(ref.torch_batch(batch))
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), theirs[name])
        assert changed == p.requires_grad, name


def test_peft_lora_trains_lora_biases_and_the_visual_embedding(setup):
    family, checkpoint, config, _, batch = setup
    model, step = train_step.torch_model("peft_lora", config, checkpoint, train=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if "lora_" in n]
    # q and v of every attention: encoder self, decoder self and cross (SPEC.md §5).
    cfg = api.backbone_config(config)
    sites = cfg.num_encoder_layers + 2 * cfg.num_decoder_layers
    assert len(lora) == 2 * 2 * sites  # A and B for q and v
    others = [n for n in trainable if n not in lora]
    assert all(n.startswith("visual_embedding.") or n.endswith("bias") for n in others)
    assert any(n.startswith("visual_embedding.") for n in others)
    if family == "t5":
        assert all(n.startswith("visual_embedding.") for n in others)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step(ref.torch_batch(batch))
    for name, p in model.named_parameters():
        assert (not torch.equal(p.detach(), before[name])) == p.requires_grad, name
