"""Write a directory all at once: into a temporary sibling, renamed into place when complete.

A crash mid-write leaves at most a `.<name>.tmp-<pid>` sibling, never a half-written directory
at the final path (DESIGN.md: checkpoints are written atomically).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary directory to fill; on a clean exit it replaces `out_dir` (absolute path
    in `out_dir`'s place). An existing `out_dir` is an error unless `overwrite`."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass overwrite=True to replace it)")
    parent, name = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left over by a crashed run of this same process id
    os.makedirs(tmp)
    yield tmp
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)
