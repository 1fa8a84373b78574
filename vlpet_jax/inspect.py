"""`vlpet_jax.inspect`: parameter-tree inspection (see `vlpet_jax.train.inspect`)."""

from vlpet_jax.train.inspect import *  # noqa: F403
from vlpet_jax.train.inspect import __all__  # noqa: F401
