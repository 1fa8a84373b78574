"""Hook sites where parameter-efficient modules attach to a frozen backbone.

The backbones never know which PET method is in use. At a fixed set of sites they ask a
`PetHooks` object for a module (in `setup`, so the module's parameters live under the site's
scope with a `pet_` name) and call it with a fixed convention:

* `sublayer(site)`: called as `module(residual_in, sublayer_out, train=...) -> new_sublayer_out`
  on every attention / FFN sub-layer output before the residual add (adapters, VL-PET gates).
  A module that pools over the sequence (VL-PET's small gate) sets the class attribute
  `pools_tokens = True`; at encoder sites it is then also called with `token_mask=` the
  encoder's (B, N) keep-mask (text mask, then the visual tokens' ones), so that what it pools
  over can depend on the real tokens and not on how far the batch was padded.
* `projection(site, name)`: called as `module(inputs, train=...) -> delta`, added to the output of
  attention projection `name` in {"q", "k", "v", "o"} (LoRA; VL-PET's decoder value adapter).
* `encoder_prefix()`: called as `module(embeds, mask, train=...) -> (embeds, mask)` on the encoder
  input embeddings before the first layer (prompt tuning); the backbone owns it as
  `pet_encoder_prefix`.
* `shared()`: one module for the whole model, owned by the VL model as `pet_shared` and called as
  `module(task_ids, train=...) -> context` (`task_ids` the batch's (B,) int ids, or None) before
  the backbone runs. When it exists, every `sublayer` module is called with the extra keyword
  `context=context` (HyperFormer: hyper-networks shared by all layers generate each site's adapter
  from task and layer embeddings, so the parameters cannot live at the sites).

A method returns `None` where it adds nothing, so the plain backbone is `PetHooks()`. Hooks are
frozen dataclasses: hashable, so a granularity choice is part of the compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import flax.linen as nn

Stack = Literal["encoder", "decoder"]
SublayerKind = Literal["self_attn", "cross_attn", "ff"]


@dataclasses.dataclass(frozen=True)
class Site:
    """One sub-layer of the backbone: which stack, which layer, which sub-layer."""

    stack: Stack
    layer: int
    kind: SublayerKind

    @property
    def name(self) -> str:
        return f"{self.stack}/{self.layer}/{self.kind}"


@dataclasses.dataclass(frozen=True)
class PetHooks:
    """The plain backbone: no module anywhere. PET methods subclass and override."""

    def sublayer(self, site: Site) -> nn.Module | None:
        del site
        return None

    def projection(self, site: Site, name: str) -> nn.Module | None:
        del site, name
        return None

    def encoder_prefix(self) -> nn.Module | None:
        return None

    def shared(self) -> nn.Module | None:
        return None


def apply_sublayer_hook(module: nn.Module, x, h, train: bool, context=None, token_mask=None):
    """Call a `sublayer` module with the convention above: `context` only when the hooks have a
    shared module and `token_mask` only for modules that pool over tokens, so every other method
    keeps the plain `module(x, h, train=...)` signature."""
    extra = {}
    if context is not None:
        extra["context"] = context
    if token_mask is not None and getattr(module, "pools_tokens", False):
        extra["token_mask"] = token_mask
    return module(x, h, train=train, **extra)
