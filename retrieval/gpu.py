"""Run-time choice between FAISS on the CPU and on a GPU.

`faiss-cpu` is the default dependency and the `gpu` extra brings a GPU build, so whether
the GPU path exists is only known at run time: the module must have `StandardGpuResources`
and a GPU must be visible. Everything GPU-specific in `retrieval/` goes through here, so the
rest of the package stays importable and testable on machines without one.
"""

from __future__ import annotations

from typing import Any

import faiss

_resources: Any = None


def gpu_status() -> tuple[bool, str]:
    """Whether FAISS can use a GPU here, and a sentence saying why (for logs, skips, `bot info`)."""
    if not hasattr(faiss, "StandardGpuResources"):
        return False, f"faiss {faiss.__version__} was built without GPU support (install the gpu extra)"
    count = faiss.get_num_gpus()
    if count == 0:
        return False, f"faiss {faiss.__version__} has GPU support but sees no GPU"
    return True, f"faiss {faiss.__version__} sees {count} GPU(s)"


def resolve_device(device: str | None) -> str:
    """Map "auto"/None to the best available device; refuse "gpu" clearly when there is none."""
    available, reason = gpu_status()
    if device in (None, "auto"):
        return "gpu" if available else "cpu"
    if device == "gpu" and not available:
        raise RuntimeError(f"device 'gpu' was asked for, but {reason}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"unknown device {device!r}: use cpu, gpu or auto")
    return device


def describe_backend(device: str | None = None) -> dict[str, str]:
    """What `bot info` prints: the faiss version, the device that would be used, and why."""
    available, reason = gpu_status()
    chosen = "gpu" if available and device != "cpu" else "cpu"
    if device == "cpu" and available:
        reason += "; cpu was asked for"
    return {"faiss": faiss.__version__, "device": chosen, "reason": reason}


def _gpu_resources() -> Any:
    """One StandardGpuResources per process: it owns cuBLAS handles and a scratch pool,
    both expensive to create, and may be shared by every index on the GPU."""
    global _resources
    if _resources is None:
        _resources = faiss.StandardGpuResources()
    return _resources


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of a CPU index on GPU 0 (flat and IVF indexes are supported by FAISS's GPU code)."""
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """Bring an index built on the GPU back, to save it or to update it incrementally."""
    return faiss.index_gpu_to_cpu(index)
