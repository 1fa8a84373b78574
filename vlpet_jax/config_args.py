"""Parse the `:key=value,...` argument of a config string into typed values.

`configs/image_text.py:backbone=t5_base,method=vl_pet_small,runlocal=True` reaches the config's
`get_config` as the string after the first colon. A config declares the keys it accepts with
their defaults, and each value is converted to the type of its default, so a typo or a value of
the wrong kind fails when the config is built, naming the key, rather than somewhere in training.

    arg = parse_arg(arg, backbone="bart_base", method="vl_pet_large", runlocal=False)
    arg.backbone, arg.runlocal

Rules: pairs are separated by `,`; a bare `key` means `key=True` (for booleans); a tuple default
takes `+`-separated items (`tasks=vqa+gqa`), because `,` already separates pairs.
"""

from __future__ import annotations

from typing import Any

import ml_collections

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _convert(key: str, text: str, default: Any) -> Any:
    """`text` as the type of `default` (bool, int, float, str or tuple of str)."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"config argument {key}={text!r}: expected a boolean (True/False)")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"config argument {key}={text!r}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"config argument {key}={text!r}: expected a number") from None
    if isinstance(default, tuple):
        return tuple(item for item in text.split("+") if item)
    return text


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """`key=value` pairs of `arg` over `defaults`, typed by the defaults.

    Raises ValueError on an unknown key (listing the accepted ones), a repeated key, or a value
    that does not convert to its default's type.
    """
    values = dict(defaults)
    seen: set[str] = set()
    for raw in (arg or "").split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, text = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(
                f"unknown config argument {key!r} in {arg!r}; accepted: {', '.join(defaults)}"
            )
        if key in seen:
            raise ValueError(f"config argument {key!r} is given twice in {arg!r}")
        seen.add(key)
        if not sep:
            if not isinstance(defaults[key], bool):
                raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
            values[key] = True
        else:
            values[key] = _convert(key, text.strip(), defaults[key])
    return ml_collections.ConfigDict(values)
