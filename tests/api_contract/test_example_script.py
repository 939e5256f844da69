"""examples/api_quickstart.py, run as a user would: against a live server with a real worker."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experts.models import ExpertVersion
from gating.selectors import production_version
from tests.helpers import REPO, make_artifact

SCRIPT = REPO / "examples" / "api_quickstart.py"


@pytest.mark.worker
def test_it_uploads_an_expert_waits_for_validation_and_predicts(
        live_api, celery_worker_process, owner, tmp_path):
    manifest, _ = make_artifact(tmp_path / "artifact", domain="news", seed=7)
    env = {**os.environ, "MOECOLLAB_USERNAME": owner.username,
           "MOECOLLAB_PASSWORD": f"pw-{owner.username}"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", live_api.url, "--domain", "news",
         "--artifact", str(manifest.parent), "--name", "quickstart-news", "--wait", "300",
         "--text", "Stocks tumbled after the central bank raised rates",
         "--text", "WINNER!! Claim your free prize now, text WIN to 80080"],
        env=env, capture_output=True, text=True, timeout=420)
    out = result.stdout
    print(out, result.stderr)
    assert result.returncode == 0, f"{out}\n{result.stderr}\n{live_api.server.log_tail()}"

    version = ExpertVersion.objects.get(expert__name="quickstart-news", expert__owner=owner)
    assert version.status == ExpertVersion.Status.AWAITING_REVIEW
    assert f"logged in as {owner.username} (contributor)" in out and "note:" not in out
    assert f"created expert #{version.expert_id} 'quickstart-news' for domain news" in out
    assert "validation finished: awaiting_review" in out
    for check in version.checks:
        assert f"[ok] {check['name']}" in out
    assert f"test_accuracy = {version.metrics['test_accuracy']}" in out
    assert f"predictions of production gating v{production_version().number} " in out
    lines = [line for line in out.splitlines() if " -> " in line]
    assert len(lines) == 2 and all("experts:" in line for line in lines)
    assert lines[1].split(" -> ")[1].startswith("spam/")
