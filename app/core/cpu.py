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


VECTOR_FLAGS = ("avx2", "avx512f", *(flag for flags in NATIVE_CPU_FLAGS.values() for flag in flags))
"""The flags that decide CPU inference and training speed here (results files record which of them a machine has)."""


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name`` field of ``/proc/cpuinfo`` (None where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    return set((_cpuinfo_field("flags") or "").split())


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), e.g. ``AMD EPYC 7B13``; None where it cannot be read."""
    return _cpuinfo_field("model name")


def vector_extensions(flags: set[str]) -> list[str]:
    """Which of :data:`VECTOR_FLAGS` the CPU has, in that order."""
    return [flag for flag in VECTOR_FLAGS if flag in flags]


def native_on_cpu(dtype: str, flags: set[str] | None = None) -> bool:
    """Whether ``dtype`` (``bfloat16``, ``float16``, ``float32`` ...) runs natively on this CPU (``flags``: the CPU's
    flags, read from ``/proc/cpuinfo`` when None). Dtypes without a flag requirement are native."""
    needed = NATIVE_CPU_FLAGS.get(dtype)
    if needed is None:
        return True
    return bool((cpu_flags() if flags is None else flags) & set(needed))
