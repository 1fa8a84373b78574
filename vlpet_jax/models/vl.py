"""The vision-and-language encoder-decoder: a frozen T5/BART backbone that reads visual tokens
after the text (SPEC.md §2), with PET modules attached through the backbone's hooks.

    logits = model.apply({"params": params}, batch, train=False)     # (B, T_dec, vocab)

`batch` keys: `input_ids`, `attention_mask` (B, L); `vis_feats` (B, V, feat_dim);
`decoder_input_ids` (B, T); optional `vis_pos` (B, V, 4) boxes (default zeros, as grid features
have), `img_order_ids` (B, V) (default 0), `obj_order_ids` (B, V) (default 0..V-1),
`decoder_attention_mask` (B, T) (default: causal only, as the released code trains), `task_ids`
(B,) (read only by PET methods with a shared, task-conditioned module: HyperFormer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.backbone import build_backbone
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.models.visual import VisualEmbedding

Array = jax.Array
Batch = Mapping[str, Array]
REQUIRED_KEYS = ("input_ids", "attention_mask", "vis_feats")


def visual_inputs(batch: Batch) -> tuple[Array, Array, Array, Array]:
    """(feats, boxes, img_order_ids, obj_order_ids) with the documented defaults filled in."""
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise KeyError(f"batch is missing {missing}; it has {sorted(batch)}")
    feats = batch["vis_feats"]
    if feats.ndim != 3:
        raise ValueError(f"batch['vis_feats'] must be (B, V, feat_dim), found shape {feats.shape}")
    b, v = feats.shape[:2]
    boxes = batch.get("vis_pos")
    if boxes is None:
        boxes = jnp.zeros((b, v, 4), jnp.float32)
    elif boxes.shape != (b, v, 4):
        raise ValueError(f"batch['vis_pos'] must be (B, V, 4) = {(b, v, 4)}, found {boxes.shape}")
    img_order = batch.get("img_order_ids")
    if img_order is None:
        img_order = jnp.zeros((b, v), jnp.int32)
    obj_order = batch.get("obj_order_ids")
    if obj_order is None:
        obj_order = jnp.broadcast_to(jnp.arange(v, dtype=jnp.int32), (b, v))
    return feats, boxes, img_order, obj_order


class VLModel(nn.Module):
    backbone_cfg: BackboneConfig
    hooks: PetHooks = PetHooks()
    num_images: int = 2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.backbone_cfg
        self.backbone = build_backbone(cfg, self.hooks, self.dtype, self.param_dtype)
        # A PET module shared by every hook site (HyperFormer's hyper-networks), or None.
        self.pet_shared = self.hooks.shared()
        self.visual_embedding = VisualEmbedding(
            family=cfg.family,
            d_model=cfg.d_model,
            num_images=self.num_images,
            layer_norm_eps=cfg.layer_norm_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def embed_visual(self, batch: Batch) -> Array:
        feats, boxes, img_order, obj_order = visual_inputs(batch)
        # Object-order codes: fixed rows at the end of the frozen token table.
        codes = self.backbone.shared(self.backbone_cfg.vocab_size - 1 - obj_order)
        return self.visual_embedding(feats, boxes, img_order, codes)

    def pet_context(self, task_ids: Array | None, train: bool = False) -> Any:
        """What the hooks' shared module hands every hook site (None without one)."""
        if self.pet_shared is None:
            return None
        return self.pet_shared(task_ids, train=train)

    def encode(self, batch: Batch, train: bool = False) -> tuple[Array, Array]:
        """Encoder states (B, L + V, d) and the keep-mask [text_mask, ones(V)]."""
        vis_tokens = self.embed_visual(batch)
        return self.backbone.encode(
            batch["input_ids"],
            batch["attention_mask"],
            vis_tokens,
            None,
            train=train,
            pet_context=self.pet_context(batch.get("task_ids"), train),
        )

    def decode(self, batch: Batch, enc_hidden: Array, enc_mask: Array, train: bool = False):
        return self.backbone.decode(
            batch["decoder_input_ids"],
            enc_hidden,
            enc_mask,
            batch.get("decoder_attention_mask"),
            train,
            pet_context=self.pet_context(batch.get("task_ids"), train),
        )

    def __call__(self, batch: Batch, train: bool = False) -> Array:
        if "decoder_input_ids" not in batch:
            raise KeyError(f"batch is missing 'decoder_input_ids'; it has {sorted(batch)}")
        enc_hidden, enc_mask = self.encode(batch, train)
        return self.decode(batch, enc_hidden, enc_mask, train)

    def init_cache(
        self,
        enc_hidden: Array,
        enc_mask: Array,
        max_length: int,
        task_ids: Array | None = None,
        num_beams: int = 1,
    ) -> dict:
        """The backbone's decode cache (`enc_hidden` per item, see the backbone's `init_cache`);
        with a shared PET module it also keeps the rows' `task_ids` (one per decoder row, i.e.
        repeated per beam) so each step can rebuild the shared context."""
        cache = self.backbone.init_cache(enc_hidden, enc_mask, max_length, num_beams)
        if self.pet_shared is not None:
            if task_ids is None:
                raise ValueError(
                    f"PET hooks {type(self.hooks).__name__} condition on the task: pass the "
                    "batch's task_ids (repeated per beam) to init_cache"
                )
            cache["task_ids"] = jnp.asarray(task_ids)
        return cache

    def decode_step(self, tokens: Array, cache: dict, index: Array) -> tuple[Array, dict]:
        context = self.pet_context(cache.get("task_ids"))
        return self.backbone.decode_step(tokens, cache, index, pet_context=context)
