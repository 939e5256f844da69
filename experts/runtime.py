"""Per-process ML resources for workers: one backbone and one feature cache, loaded on first use."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=1)
def worker_backbone():
    from experts.ml.backbone import BackboneConfig, load_backbone

    return load_backbone(BackboneConfig(device=settings.MOECOLLAB_DEVICE))


@lru_cache(maxsize=1)
def worker_feature_cache():
    import torch

    from experts.ml.features import FeatureCache
    from experts.ml.inference import open_encoder

    backbone = worker_backbone()
    encoder = open_encoder(backbone, settings.MOECOLLAB_ENCODE_BACKEND,
                           cache_dir=settings.MOECOLLAB_FEATURE_CACHE_DIR,
                           threads=torch.get_num_threads())
    return FeatureCache(settings.MOECOLLAB_FEATURE_CACHE_DIR, backbone, encoder=encoder)
