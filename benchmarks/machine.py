"""A description of the machine and the software versions the benchmark ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo, or what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def usable_cores() -> int | None:
    """Cores this process may run on (the affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def version(package: str) -> str | None:
    """An installed distribution's version, or None when it is absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages when the run starts (timings depend on them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def torch_threads() -> int | None:
    """PyTorch's intra-op thread count (it may use every core; NumPy's ufuncs use one)."""
    if version("torch") is None:
        return None
    import torch

    return torch.get_num_threads()


def describe() -> dict:
    """Machine, operating system and versions, as JSON-ready values."""
    import lossutils

    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average": load_average(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "mpmath": version("mpmath"),
        "torch": version("torch"),
        "torch_threads": torch_threads(),
        "jax": version("jax"),
        "jaxlib": version("jaxlib"),
        "optax": version("optax"),
        "lossutils": lossutils.__version__,
    }
