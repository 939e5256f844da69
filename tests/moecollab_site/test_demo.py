"""The demo: a sample set written for the project, built into a working installation, reused."""
from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from experts.models import DataSplit, Domain, ExpertVersion, LeaderboardEntry
from gating import serving
from gating.models import GatingMember, GatingVersion, Promotion
from gating.selectors import production_version
from moecollab_site.demo import (
    ALREADY_BUILT,
    BUILT,
    DEMO_CONTRIBUTORS,
    INTERRUPTED,
    SAMPLE_DATA_DIR,
    SKIPPED,
    _capped_folder,
    demo_prepare,
)
from moecollab_site.management.commands.prepare_demo import TerminalProgress, demo_summary
from moecollab_site.roles import CONTRIBUTOR
from tests.helpers import api_client_for, make_domain, make_expert, make_version
from training.models import Job
from training.runner import HANDLERS

# Chance level of each sample domain: 1 / number of labels.
CHANCE = {"news": 1 / 4, "questions": 1 / 6, "sentiment": 1 / 2, "spam": 1 / 2}
MIN_ROWS = {"train": 40, "dev": 12, "test": 12}


def _counts() -> dict[str, int]:
    return {"domains": Domain.objects.count(), "users": User.objects.count(),
            "versions": ExpertVersion.objects.count(), "gating": GatingVersion.objects.count(),
            "promotions": Promotion.objects.count(), "jobs": Job.objects.count()}


def test_it_ships_a_valid_balanced_sample_set():
    seen: dict[str, str] = {}
    for name in DEMO_CONTRIBUTORS:
        folder = SAMPLE_DATA_DIR / name
        meta = json.loads((folder / "domain.json").read_text(encoding="utf-8"))
        assert set(meta) == {"name", "description", "labels"} and meta["name"] == name
        assert meta["description"] and len(meta["labels"]) == len(set(meta["labels"])) >= 2
        for kind, least in MIN_ROWS.items():
            rows = [json.loads(line) for line in
                    (folder / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()]
            assert len(rows) >= least, f"{name}/{kind} has {len(rows)} rows"
            assert all(set(r) == {"text", "label"} and r["text"].strip() for r in rows)
            counts = Counter(r["label"] for r in rows)
            assert set(counts) == set(meta["labels"]), f"{name}/{kind}: {counts}"
            assert max(counts.values()) - min(counts.values()) <= 1, f"{name}/{kind}: {counts}"
            for r in rows:
                assert r["text"] not in seen, f"{r['text']!r} is in {seen.get(r['text'])} too"
                seen[r["text"]] = f"{name}/{kind}"


def test_it_caps_a_large_folder_deterministically_and_carves_a_test_split(tmp_path):
    src = tmp_path / "big" / "news"
    src.mkdir(parents=True)
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    (src / "domain.json").write_text(json.dumps({"name": "news", "labels": labels}))
    for kind, n in (("train", 200), ("dev", 60)):
        (src / f"{kind}.jsonl").write_text("".join(
            json.dumps({"text": f"{kind} story {i}", "label": labels[i % 4]}) + "\n"
            for i in range(n)))
    before = {p.name: p.read_bytes() for p in src.iterdir()}

    first = _capped_folder(src, tmp_path / "a", max_train=40)
    second = _capped_folder(src, tmp_path / "b", max_train=40)

    def lines(folder, kind):
        return (folder / f"{kind}.jsonl").read_text().splitlines()

    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # source untouched
    for kind in ("train", "dev", "test"):
        assert lines(first, kind) == lines(second, kind)
    assert len(lines(first, "train")) == 40
    dev, test = set(lines(first, "dev")), set(lines(first, "test"))
    assert len(dev) == len(test) == 30 and not dev & test
    assert all('"dev story' in line for line in dev | test)
    assert _capped_folder(SAMPLE_DATA_DIR / "news", tmp_path / "c", max_train=100) == \
        SAMPLE_DATA_DIR / "news"  # small enough: imported as it is


def test_it_builds_a_working_demo_resumes_it_and_then_reuses_it(
        db, maintainer, client, settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path / "var"
    real_train_gating = HANDLERS[Job.Kind.TRAIN_GATING]

    def interrupted(job, ctx):
        raise KeyboardInterrupt

    # A first build stopped by Ctrl-C while the gating model trains.
    monkeypatch.setitem(HANDLERS, Job.Kind.TRAIN_GATING, interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    lost = GatingVersion.objects.select_related("train_job").get()
    assert lost.train_job.status == Job.Status.FAILED and lost.train_job.error == INTERRUPTED
    approved = set(ExpertVersion.objects.filter(status="approved").values_list("pk", flat=True))
    assert len(approved) == 4

    monkeypatch.setitem(HANDLERS, Job.Kind.TRAIN_GATING, real_train_gating)
    out = io.StringIO()
    result = demo_prepare(maintainer=maintainer, data_dir=None, max_train=40,
                          progress=TerminalProgress(out))
    assert result.status == BUILT, result.message
    assert "Preparing the demo" in out.getvalue() and "3/3 gating model" in out.getvalue()
    assert "summary test accuracy" in demo_summary(result)

    # Four domains with private test splits; questions (42 train rows) was capped to 40.
    assert sorted(Domain.objects.values_list("name", flat=True)) == sorted(DEMO_CONTRIBUTORS)
    assert DataSplit.objects.count() == 12
    assert set(DataSplit.objects.filter(kind="test").values_list("is_private", flat=True)) == {
        True}
    assert DataSplit.objects.get(domain__name="questions", kind="train").n_rows == 40

    # The experts approved by the first run were reused, not trained again.
    versions = list(ExpertVersion.objects.select_related("expert__owner", "expert__domain"))
    assert {v.pk for v in versions} == approved
    owners = {v.expert.owner for v in versions}
    assert {u.username for u in owners} == set(DEMO_CONTRIBUTORS.values())
    for v in versions:
        assert v.source == ExpertVersion.Source.UPLOAD and v.reviewed_by == maintainer
        assert DEMO_CONTRIBUTORS[v.expert.domain.name] == v.expert.owner.username
        assert not v.expert.owner.has_usable_password()
        assert v.expert.owner.groups.filter(name=CONTRIBUTOR).exists()
        assert all(c["ok"] for c in v.checks)
    accuracy = {v.expert.domain.name: v.metrics["test_accuracy"] for v in versions}
    print("demo expert test accuracy:", accuracy, "gating:", result.accuracy)
    for name, acc in accuracy.items():
        assert acc > CHANCE[name], f"{name}: {acc:.3f} is not above chance {CHANCE[name]:.3f}"
    assert result.experts == accuracy

    # One evaluated gating model of exactly those experts, in production.
    production = production_version()
    assert production.pk == result.gating_version_id != lost.pk
    assert production.status == GatingVersion.Status.EVALUATED
    assert set(GatingMember.objects.filter(version=production)
               .values_list("expert_version_id", flat=True)) == approved
    assert result.accuracy == production.report["summary"]["accuracy"] > 0.4
    assert 0 < result.utilization <= 1
    assert not Job.objects.filter(status__in=["queued", "running"]).exists()

    # Leaderboards are filled.
    boards = LeaderboardEntry.objects
    assert boards.filter(board="domain").values("domain").distinct().count() == 4
    assert boards.filter(board="contributor").count() == 4

    # The dashboard draws its charts; predict and the playground answer.
    page = client.get(f"/gating/{production.pk}/")
    assert page.status_code == 200 and page.content.count(b"<svg") >= 5
    serving.reset()
    response = api_client_for(None).post("/api/v1/predict/", {"texts": [
        "WINNER!! You have been chosen for a £2000 prize. Text CLAIM to 81234 now to collect.",
        "Are you still coming round for tea later?"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["predictions"][0]["domain"] == "spam"
    page = client.post("/gating/playground/", {"texts": "what a wonderful film"})
    assert page.status_code == 200 and b'id="predictions"' in page.content
    serving.reset()

    # A second run does nothing.
    before = _counts()
    again = demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    assert again.status == ALREADY_BUILT and again.gating_version_id == production.pk
    assert _counts() == before


def test_it_leaves_an_installation_with_experts_of_its_own_alone(db, owner, maintainer,
                                                                    settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    make_expert(owner, make_domain("legal", labels=["a", "b"]), "mine")
    before = _counts()
    result = demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    assert result.status == SKIPPED and "1 expert(s) of its own" in result.message
    assert _counts() == before


def test_it_does_not_replace_a_domain_someone_created(db, maintainer, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    make_domain("news", labels=["World", "Sports", "Business", "Sci/Tech"],
                created_by=maintainer)
    before = _counts()
    result = demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    assert result.status == SKIPPED and "'news' already exists" in result.message
    assert _counts() == before


def test_it_skips_when_a_model_of_the_installation_is_in_production(db, owner, maintainer,
                                                                      settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    version = make_version(make_expert(owner, make_domain("legal", labels=["a", "b"]), "mine"))
    gating = GatingVersion.objects.create(number=1, status=GatingVersion.Status.EVALUATED)
    GatingMember.objects.create(version=gating, expert_version=version, position=0)
    Promotion.objects.create(version=gating, promoted_by=maintainer)
    before = _counts()
    result = demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    assert result.status == SKIPPED and "in production" in result.message
    assert _counts() == before


def test_it_needs_a_maintainer_to_prepare_the_demo_from_the_command_line(db, owner):
    with pytest.raises(CommandError, match="no maintainer named 'alice'"):
        call_command("prepare_demo", "--maintainer", "alice", stdout=io.StringIO())


def test_it_says_why_the_command_skipped_the_demo(db, owner, maintainer, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    make_expert(owner, make_domain("legal", labels=["a"]), "mine")
    out = io.StringIO()
    call_command("prepare_demo", "--maintainer", maintainer.username, stdout=out)
    assert "demo skipped: this installation already has 1 expert(s)" in out.getvalue()


def test_it_revalidates_an_expert_whose_validation_was_interrupted(
        db, maintainer, settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path / "var"
    real_validate = HANDLERS[Job.Kind.VALIDATE_EXPERT]

    def interrupted(job, ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(HANDLERS, Job.Kind.VALIDATE_EXPERT, interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    stuck = ExpertVersion.objects.get()
    assert stuck.status == ExpertVersion.Status.VALIDATING
    assert Job.objects.get(pk=stuck.training_params["validation_job"]).error == INTERRUPTED

    monkeypatch.setitem(HANDLERS, Job.Kind.VALIDATE_EXPERT, real_validate)
    result = demo_prepare(maintainer=maintainer, data_dir=None, max_train=40, progress=None)
    assert result.status == BUILT
    stuck.refresh_from_db()
    assert stuck.status == ExpertVersion.Status.APPROVED and stuck.expert.versions.count() == 1
    assert Job.objects.filter(kind=Job.Kind.VALIDATE_EXPERT, status="succeeded").count() == 4
