"""HyperFormer: adapters whose weights a hyper-network generates per task and layer (SPEC.md §5).

The released run (`hyperformer.sh`: `--use_hyperformer --unique_hyper_net --unfreeze_layer_norms
--projected_task_embedding_dim 8 --reduction_factor 8`) builds, per stack, one
`AdapterLayersHyperNetController`:

    e_l   = LN(W_2 · relu(W_1 · [t ; z_l] + b_1) + b_2)        t: task embedding (512), z_l: layer l
                                                                embedding (512), 1024 → 128 → 8
    for each sub-layer kind k (encoder: self-attn, FFN; decoder: + cross-attn) a generator pair
    down_k(e_l) → (W_down (r×d), b_down (r)),  up_k(e_l) → (W_up (d×r), b_up (d))
    h' = h + W_up · gelu_tanh(W_down · h + b_down) + b_up        on that sub-layer's output

with r = d // 8, separate hyper-networks (layer embeddings, task projector, LN, generators) for
encoder and decoder, and one table of task embeddings shared by both.

Why the hook protocol has `shared()`: the hyper-networks are shared by every layer, so their
parameters cannot live at the per-site hook modules. `HyperFormerShared` is created once by the VL
model (`pet_shared`), turns the batch's `task_ids` into every site's adapter weights (the context),
and the backbone hands that context to each site's `HyperAdapter`, which owns no parameters.

Task identity: VL-PET's multi-task training takes every batch from one task (SPEC.md §6), so the
adapters are generated once per batch from `task_ids[0]`; a batch mixing tasks is not supported.
The task table has one row per task id of the data registry (`hyper_num_tasks`, default 8, all
tasks of SPEC.md §6); an id outside the table gives NaN embeddings rather than a silent wrong row.

Initialisation as the released code: task embeddings N(0, 1) (`torch.randn`) on both backbones;
on BART `_init_weights` re-initialises every generator/projector `nn.Linear` with N(0, 0.02), zero
bias, and the layer-id `nn.Embedding` with N(0, 0.02); on T5 those keep `linear_layer`'s
N(0, 0.01), zero bias, and PyTorch's N(0, 1) embedding. The LN starts at (1, 0), eps 1e-6.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks, Site
from vlpet_jax.models.layers import Dense, LayerNorm, gelu_tanh, logical_param
from vlpet_jax.pet import rules
from vlpet_jax.pet.common import pet_option, reduced_rank
from vlpet_jax.pet.registry import PetMethod, register

Array = jax.Array
HYPER_REDUCTION = 8
TASK_DIM, TASK_HIDDEN, PROJECTED_DIM = 512, 128, 8
NUM_TASKS = 8  # task ids 0..7 of the data registry (SPEC.md §6)
STACK_KINDS = {"encoder": ("self_attn", "ff"), "decoder": ("self_attn", "cross_attn", "ff")}


class StackHyperNet(nn.Module):
    """One stack's hyper-network: adapter weights of every layer and sub-layer kind for a task.

    Returns `{kind: {"down_kernel": (L, d, r), "down_bias": (L, r), "up_kernel": (L, r, d),
    "up_bias": (L, d)}}`, kernels laid out for `x @ kernel`.
    """

    kinds: tuple[str, ...]
    num_layers: int
    d_model: int
    rank: int
    task_dim: int
    hidden_dim: int
    projected_dim: int
    family: str

    def _dense(self, features: int, name: str) -> Dense:
        std = 0.01 if self.family == "t5" else 0.02
        return Dense(
            features, (None, None), kernel_init=nn.initializers.normal(std),
            bias_init=nn.initializers.zeros_init(), name=name,
        )  # fmt: skip

    @nn.compact
    def __call__(self, task_embedding: Array) -> dict[str, dict[str, Array]]:
        layers, d, r = self.num_layers, self.d_model, self.rank
        std = 1.0 if self.family == "t5" else 0.02
        layer_table = logical_param(
            self, "layer_embeddings", nn.initializers.normal(std), (layers, self.task_dim),
            (None, None), jnp.float32,
        )  # fmt: skip
        task = jnp.broadcast_to(task_embedding, (layers, self.task_dim))
        joint = jnp.concatenate([task, layer_table], axis=-1)  # (L, 2·task_dim)
        hidden = jax.nn.relu(self._dense(self.hidden_dim, "task_proj_hidden")(joint))
        embed = self._dense(self.projected_dim, "task_proj_out")(hidden)
        embed = LayerNorm(eps=1e-6, name="task_norm")(embed)  # (L, projected_dim)
        weights = {}
        for kind in self.kinds:
            # The released generators emit PyTorch `F.linear` weights (out, in), row-major.
            down_w = self._dense(r * d, f"{kind}_down_weight_gen")(embed).reshape(layers, r, d)
            up_w = self._dense(d * r, f"{kind}_up_weight_gen")(embed).reshape(layers, d, r)
            weights[kind] = {
                "down_kernel": jnp.swapaxes(down_w, 1, 2),
                "down_bias": self._dense(r, f"{kind}_down_bias_gen")(embed),
                "up_kernel": jnp.swapaxes(up_w, 1, 2),
                "up_bias": self._dense(d, f"{kind}_up_bias_gen")(embed),
            }
        return weights


class HyperFormerShared(nn.Module):
    """Task embeddings and the encoder / decoder hyper-networks (the VL model's `pet_shared`)."""

    family: str
    d_model: int
    num_encoder_layers: int
    num_decoder_layers: int
    rank: int
    task_dim: int = TASK_DIM
    hidden_dim: int = TASK_HIDDEN
    projected_dim: int = PROJECTED_DIM
    num_tasks: int = NUM_TASKS

    @nn.compact
    def __call__(self, task_ids: Array | None, train: bool = False) -> dict[str, Any]:
        """`{"encoder": ..., "decoder": ...}` as `StackHyperNet` returns them, for the batch's task."""
        del train
        if task_ids is None:
            raise ValueError(
                "HyperFormer generates its adapters per task: the batch needs 'task_ids' (B,) "
                "int32, every row of one task"
            )
        table = logical_param(
            self, "task_embeddings", nn.initializers.normal(1.0),
            (self.num_tasks, self.task_dim), (None, None), jnp.float32,
        )  # fmt: skip
        task = jnp.reshape(jnp.asarray(task_ids), (-1,))[0]  # single-task batches (docstring)
        task_embedding = jnp.take(table, task, axis=0, mode="fill", fill_value=jnp.nan)
        layers = {"encoder": self.num_encoder_layers, "decoder": self.num_decoder_layers}
        sizes = dict(
            d_model=self.d_model, rank=self.rank, task_dim=self.task_dim,
            hidden_dim=self.hidden_dim, projected_dim=self.projected_dim, family=self.family,
        )  # fmt: skip
        return {
            stack: StackHyperNet(kinds, layers[stack], name=stack, **sizes)(task_embedding)
            for stack, kinds in STACK_KINDS.items()
        }


class HyperAdapter(nn.Module):
    """The adapter at one site, with the weights the shared hyper-network generated for it."""

    stack: str
    layer: int
    kind: str

    @nn.compact
    def __call__(self, x: Array, h: Array, context: Any = None, train: bool = False) -> Array:
        del x, train
        if context is None:
            raise ValueError(
                "HyperFormer sites need the shared hyper-network's output: run the backbone "
                "through VLModel, which builds it from the batch's task_ids"
            )
        w = jax.tree.map(lambda a: a[self.layer].astype(h.dtype), context[self.stack][self.kind])
        z = gelu_tanh(h @ w["down_kernel"] + w["down_bias"])
        return h + z @ w["up_kernel"] + w["up_bias"]


@dataclasses.dataclass(frozen=True)
class HyperFormerHooks(PetHooks):
    """Generated adapters on every sub-layer of both stacks, hyper-networks in `shared()`."""

    family: str = "bart"
    d_model: int = 768
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    rank: int = 96
    task_dim: int = TASK_DIM
    hidden_dim: int = TASK_HIDDEN
    projected_dim: int = PROJECTED_DIM
    num_tasks: int = NUM_TASKS

    def sublayer(self, site: Site) -> nn.Module | None:
        return HyperAdapter(site.stack, site.layer, site.kind)

    def shared(self) -> nn.Module | None:
        return HyperFormerShared(
            self.family, self.d_model, self.num_encoder_layers, self.num_decoder_layers,
            self.rank, self.task_dim, self.hidden_dim, self.projected_dim, self.num_tasks,
        )  # fmt: skip


@register("hyperformer")
def _hyperformer(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    reduction = pet_option(pet, "hyper_reduction", HYPER_REDUCTION)
    hooks = HyperFormerHooks(
        family=backbone.family,
        d_model=backbone.d_model,
        num_encoder_layers=backbone.num_encoder_layers,
        num_decoder_layers=backbone.num_decoder_layers,
        rank=reduced_rank(backbone.d_model, reduction, "hyper_reduction"),
        task_dim=pet_option(pet, "hyper_task_dim", TASK_DIM),
        hidden_dim=pet_option(pet, "hyper_hidden_dim", TASK_HIDDEN),
        projected_dim=pet_option(pet, "hyper_projected_dim", PROJECTED_DIM),
        num_tasks=pet_option(pet, "hyper_num_tasks", NUM_TASKS),
    )
    trainable = [rules.VISUAL, rules.PET, *rules.all_norm_rules(backbone)]
    return PetMethod(
        name="hyperformer",
        hooks=hooks,
        rules=[*trainable, rules.FREEZE_REST],
        description=f"HyperFormer: generated adapters r={hooks.rank}, all norms",
        decay_exceptions=[rules.HYPER_NETWORK_NO_DECAY],
    )
