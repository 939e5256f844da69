"""The platform ships what the benchmark measures: on the same data, experts and seed, the
TRAIN_GATING job and `moe_benchmark` train the same router."""
from __future__ import annotations

from pathlib import Path

import torch

from experts.services import domain_import_folder
from gating.ml.bundle import load_bundle
from gating.models import GatingVersion
from gating.services import gating_train_start
from tests.helpers import data_dir, make_expert, make_version
from training.ml.benchmark import BenchmarkConfig, run_benchmark
from training.models import Job
from training.runner import run_job


def _slice(dest: Path) -> Path:
    """The first lines of each shared domain: 120 train and 24 dev rows."""
    src = data_dir()
    for folder in sorted(p for p in src.iterdir() if (p / "domain.json").is_file()):
        out = dest / folder.name
        out.mkdir(parents=True)
        (out / "domain.json").write_bytes((folder / "domain.json").read_bytes())
        for name, n in (("train.jsonl", 120), ("dev.jsonl", 24)):
            lines = (folder / name).read_text(encoding="utf-8").splitlines()[:n]
            (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def test_the_job_and_the_benchmark_train_the_same_router(db, tmp_path, settings, owner,
                                                         maintainer):
    data = _slice(tmp_path / "data")
    saved = tmp_path / "saved"
    report = run_benchmark(BenchmarkConfig(
        data_dir=str(data), device="cpu", expert_epochs=3,
        cache_dir=str(settings.MOECOLLAB_FEATURE_CACHE_DIR), small_model_threads=None,
        save_dir=str(saved),
    ))
    # The platform path: the same domain folders imported, the benchmark's experts uploaded
    # as approved versions, default gating training run by its job handler.
    ids = []
    for folder in sorted(data.iterdir()):
        domain = domain_import_folder(path=folder)
        version = make_version(make_expert(owner, domain), artifact=saved / "experts" / domain.name)
        ids.append(version.pk)
    job = gating_train_start(user=maintainer, expert_version_ids=ids)
    assert run_job(job.pk, worker="test@one-engine") == Job.Status.SUCCEEDED, \
        Job.objects.get(pk=job.pk).error
    platform = load_bundle(GatingVersion.objects.get().weights.path)
    bench = load_bundle(saved / "gating.safetensors")

    assert platform.moe.router.config == bench.moe.router.config
    assert platform.moe.router.config.input_layers == (6, 0)
    assert report["environment"]["router_layers"] == [6, 0]
    for ours, theirs in ((platform.moe.router, bench.moe.router),
                         (platform.unregularized, bench.unregularized)):
        want, got = theirs.state_dict(), ours.state_dict()
        assert set(want) == set(got)
        for name in want:  # the same computation in one process; tolerance for thread order
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4)
    assert {k: v for k, v in platform.config.items() if k != "device"} == {
        k: v for k, v in bench.config.items() if k != "device"}
