"""Timing and memory helpers shared by the benchmarks."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


def time_call(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Median and min wall-clock seconds of `fn()` after `warmup` untimed calls (compilation)."""
    for _ in range(warmup):
        _block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def _block(result: Any) -> None:
    try:
        import jax

        jax.block_until_ready(result)
    except (ImportError, TypeError):
        pass


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def current_rss_mib() -> float:
    return _status_mib("VmRSS")


def reset_peak_rss() -> None:
    """Restart the kernel's high-water mark (VmHWM) so a later peak belongs to what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_since_reset_mib() -> float:
    return _status_mib("VmHWM")


def _cpu_simd(flags: set[str]) -> str:
    """The widest vector extension, which decides the matmul rates the MFU figures divide by."""
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")):
        if flag in flags:
            return name
    return ""


def _version(package: str) -> str:
    """Installed version without importing the package (torch takes seconds to import)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def machine_description() -> dict[str, Any]:
    """What a reader needs to compare timings: CPU, cores, vector width and library versions."""
    import os
    import platform

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
        flag_lines = [line.split(":", 1)[1].split() for line in info if line.startswith("flags")]
        flags = set(flag_lines[0]) if flag_lines else set()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "simd": _cpu_simd(flags),
        "jax": _version("jax"),
        "torch": _version("torch"),
    }
