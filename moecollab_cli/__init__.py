"""`moecollab`: the contributor's command line for a MoECollab platform.

It talks to the platform through its REST API (/api/v1/, described at /api/schema/) and runs the
Django-free ML core locally: the upload checks (experts.ml.upload_checks) in the base install,
training (training.ml.expert_train) with the `train` extra.
"""
from __future__ import annotations

__version__ = "0.1.0"
