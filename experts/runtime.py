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
    from experts.ml.features import FeatureCache

    return FeatureCache(settings.MOECOLLAB_FEATURE_CACHE_DIR, worker_backbone())
