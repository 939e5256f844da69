from __future__ import annotations

import pytest

from tests.experts.ml.tiny import load_tiny_backbone, write_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir):
    return load_tiny_backbone(tiny_model_dir)
