"""The trainable visual embedding that turns CLIP features into encoder tokens (SPEC.md §2).

    v = Norm(Linear(feat_dim→d)(feats)) + Norm(Linear(5→d)([box, area]))
        + Emb_img(img_order_ids) + Shared[vocab - 1 - obj_order_ids]

Norm is LayerNorm for BART and RMSNorm for T5. The object-order term reads the frozen shared token
table (passed in by the caller), so it has no parameters here.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.layers import EMBED, Dense, LayerNorm, RMSNorm, logical_param
from vlpet_jax.pet.common import torch_linear_init

Array = jax.Array
FEAT = "vis_feat"


def box_area(boxes: Array) -> Array:
    """The area feature appended to the 4 box coordinates, exactly as the released code computes
    it: (b3 - b2) * (b1 - b0). For (x1, y1, x2, y2) boxes that is not the geometric area, but the
    released checkpoints were trained with it (SPEC.md: the code wins). Grid and video features
    have all-zero boxes, where every convention gives 0."""
    return ((boxes[..., 3] - boxes[..., 2]) * (boxes[..., 1] - boxes[..., 0]))[..., None]


class VisualEmbedding(nn.Module):
    family: str
    d_model: int
    num_images: int = 2
    layer_norm_eps: float = 1e-5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _dense(self, fan_in: int, axes, name: str) -> Dense:
        # BART's VL-T5 init: N(0, 0.02) and zero bias; on T5 these Linear layers keep PyTorch's
        # default U(±1/sqrt(fan_in)) for kernel and bias.
        if self.family == "t5":
            init = dict(kernel_init=torch_linear_init(fan_in), bias_init=torch_linear_init(fan_in))
        else:
            init = dict(kernel_init=nn.initializers.normal(0.02))
        return Dense(
            self.d_model, axes, dtype=self.dtype, param_dtype=self.param_dtype, name=name, **init
        )

    def _norm(self, name: str) -> nn.Module:
        norm = RMSNorm if self.family == "t5" else LayerNorm
        return norm(
            eps=self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )

    @nn.compact
    def __call__(
        self,
        feats: Array,
        boxes: Array,
        img_order_ids: Array,
        obj_order_codes: Array,
    ) -> Array:
        """feats (B, V, feat_dim), boxes (B, V, 4), img_order_ids (B, V) int, obj_order_codes
        (B, V, d) rows of the shared table -> visual tokens (B, V, d)."""
        feat_proj = self._dense(feats.shape[-1], (FEAT, EMBED), "feat_proj")
        feat_norm = self._norm("feat_norm")
        pos_proj = self._dense(5, (None, EMBED), "box_proj")
        pos_norm = self._norm("box_norm")
        std = 1.0 if self.family == "t5" else 0.02
        img_table = logical_param(
            self, "img_order_embedding", nn.initializers.normal(std),
            (self.num_images, self.d_model), (None, EMBED), self.param_dtype,
        )  # fmt: skip
        feat = feat_norm(feat_proj(feats))
        pos = pos_norm(pos_proj(jnp.concatenate([boxes, box_area(boxes)], axis=-1)))
        img = jnp.take(img_table, img_order_ids, axis=0).astype(self.dtype)
        return feat + pos + img + obj_order_codes.astype(self.dtype)
