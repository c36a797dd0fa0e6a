"""Numerics that do not depend on the machine: call `pin_numerics()` at the top of an entry point,
before anything imports TensorFlow, numpy's BLAS or OpenCV (nothing here runs at import time).

What made the demo's weights differ between x86-64 machines, measured on a tiny E_1a stage
(docs/DEMO_NOTES.md): the CPU instruction set that oneDNN picks at run time (its sgemm also backs
TensorFlow's Eigen contractions, so TF_ENABLE_ONEDNN_OPTS=0 alone is not enough), and the number
of intra-op threads, which decides how contractions and reductions are split; numpy's OpenBLAS
likewise picks its kernel by CPU and splits by thread count. Each is pinned below; the prefetch
threads already hand batches over in sampler order.
"""
import os

# variable -> value; set unconditionally (a user's own value would make the table machine-specific)
PINNED = {
    "TF_ENABLE_ONEDNN_OPTS": "1",     # oneDNN kernels (2.4x faster than TensorFlow's own here), capped to AVX2 below
    "ONEDNN_MAX_CPU_ISA": "AVX2",     # the sgemm behind Eigen contractions: same kernels on AVX2 and AVX-512
    "TF_DETERMINISTIC_OPS": "1",      # no op with a run-to-run order of accumulation
    "TF_NUM_INTRAOP_THREADS": "2",    # contractions split the same way whatever the core count
    "TF_NUM_INTEROP_THREADS": "2",
    "OPENBLAS_CORETYPE": "Haswell",   # numpy's matmul (mining, retrieval): one kernel on every AVX2 CPU
    "OPENBLAS_NUM_THREADS": "1",      # (with the Haswell kernel, 1 and 2 threads give other float32 sums)
}
# Not needed: OpenCV's resize, blur, distance transform, JPEG and PNG coding gave the same bytes with
# its AVX-512, AVX2 and SSE paths (OPENCV_CPU_DISABLE), so the synthetic city and the loader are stable.


def pin_numerics(enabled: bool = True) -> dict:
    """Set PINNED in os.environ (before TensorFlow, numpy and OpenCV load); returns what was set.

    Refuses (RuntimeError) once TensorFlow has been imported, since it reads these only at start.
    """
    import sys
    if not enabled:
        return {}
    if "tensorflow" in sys.modules:
        raise RuntimeError("pin_numerics() must run before TensorFlow is imported: call it first in the entry point")
    os.environ.update(PINNED)
    return dict(PINNED)
