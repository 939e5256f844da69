"""Job handlers that belong to no other app; each turns a Job into metrics."""
from __future__ import annotations

import platform
import time

from training.models import Job
from training.runner import JobContext, register


@register(Job.Kind.SELF_CHECK)
def self_check(job: Job, ctx: JobContext) -> dict:
    """Load the backbone on this worker and encode a few texts: proves the worker can do ML work."""
    import torch

    from experts.ml.backbone import BackboneConfig, load_backbone
    from experts.runtime import worker_backbone

    ctx.progress(0, 3, "loading backbone")
    started = time.perf_counter()
    # The worker's own backbone (loaded once per process) unless another device is asked for.
    device = job.params.get("device")
    backbone = (load_backbone(BackboneConfig(device=device)) if device else worker_backbone())
    ctx.check_stop()
    ctx.progress(1, 3, "encoding sample texts")
    texts = ["The match ended in a draw.", "Shares rose after the earnings call.", "Win a prize!"]
    pooled = backbone.encode(texts, layer=backbone.num_layers)
    ctx.progress(2, 3, "checking output")
    if tuple(pooled.shape) != (len(texts), backbone.hidden_size):
        raise RuntimeError(f"unexpected embedding shape {tuple(pooled.shape)}")
    if not torch.isfinite(pooled).all():
        raise RuntimeError("embedding contains NaN or Inf")
    ctx.progress(3, 3, "done", force=True)
    return {
        "backbone": backbone.name,
        "fingerprint": backbone.fingerprint,
        "device": str(backbone.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seconds": round(time.perf_counter() - started, 3),
    }
