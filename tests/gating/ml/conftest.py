"""Tiny stand-in experts for the gating tests: fixed or linear logits, with call counters."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from experts.ml.trunk import TrunkBatch


class StubExpert(nn.Module):
    """Logits = pooled @ W + fixed bias; counts calls and the rows it saw."""

    def __init__(self, domain, labels, *, hidden=4, logits=None, needs_tokens=False, seed=0,
                 split_layer=1):
        super().__init__()
        self.config = SimpleNamespace(domain=domain, labels=list(labels), split_layer=split_layer)
        self.needs_tokens = needs_tokens
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(hidden, len(labels))
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(len(labels), hidden, generator=g))
            if logits is not None:
                self.proj.weight.zero_()
                self.proj.bias.copy_(torch.tensor(logits, dtype=torch.float32))
        self.calls = 0
        self.rows_seen = 0
        self.last_trunk = None

    def forward(self, trunk):
        self.calls += 1
        self.rows_seen += trunk.pooled.shape[0]
        self.last_trunk = trunk
        if self.needs_tokens:
            assert trunk.hidden is not None and trunk.mask is not None
            m = trunk.mask.unsqueeze(-1).float()
            x = (trunk.hidden.float() * m).sum(1) / m.sum(1).clamp_min(1)
            return self.proj(x)
        return self.proj(trunk.pooled)


@pytest.fixture
def trunk_cls():
    return TrunkBatch  # the engine's own one-layer batch


@pytest.fixture
def stub_expert():
    return StubExpert
