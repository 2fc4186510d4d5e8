"""What this CPU computes natively: serving picks its dtype with it, training its mixed precision.

A 16-bit dtype without native instructions is emulated, and runs several times slower than float32 (seen on an
AVX2-only CPU with the ``cpu-smol`` SFT preset's bf16 autocast).
"""

from __future__ import annotations

NATIVE_CPU_FLAGS: dict[str, tuple[str, ...]] = {
    "bfloat16": ("avx512_bf16", "amx_bf16"),
    "float16": ("avx512_fp16", "amx_fp16"),
}
"""The ``/proc/cpuinfo`` flags, any of which means the dtype is native on this CPU."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def native_on_cpu(dtype: str, flags: set[str] | None = None) -> bool:
    """Whether ``dtype`` (``bfloat16``, ``float16``, ``float32`` ...) runs natively on this CPU (``flags``: the CPU's
    flags, read from ``/proc/cpuinfo`` when None). Dtypes without a flag requirement are native."""
    needed = NATIVE_CPU_FLAGS.get(dtype)
    if needed is None:
        return True
    return bool((cpu_flags() if flags is None else flags) & set(needed))
