"""The demo installation: four domains, one approved expert each, a promoted gating model.

Built through the same paths users and workers take: domains are imported by the import
service, each demo contributor trains a head expert with the engine and uploads it through the
upload checks, the validation job runs (in this process), the local maintainer approves it, and a
gating model is trained, evaluated and promoted by the job handlers. Every step can resume: an
approved expert is not retrained, a queued job is run, a job an interrupted build left behind is
redone. The demo fills an empty installation only and never touches anyone else's data.
"""
from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from experts import demo_data
from experts.datasets import DatasetError, parse_dataset
from experts.models import DataSplit, Domain, Expert, ExpertVersion
from gating.models import GatingVersion
from moecollab_site.errors import DomainError
from moecollab_site.roles import CONTRIBUTOR, user_add_role
from training.models import Job
from training.runner import run_job

SAMPLE_DATA_DIR = Path(demo_data.__file__).resolve().parent  # the marketplace keeps the set
# One contributor per domain, so the contributor leaderboard has several rows.
DEMO_CONTRIBUTORS = {"news": "ada", "questions": "grace", "sentiment": "alan",
                     "spam": "katherine"}
DEMO_EMAIL_DOMAIN = "demo.moecollab.invalid"  # marks the accounts the demo owns
EVAL_ROWS = 300  # dev and test rows kept per domain from a large data folder
WAIT_FOR_WORKER_S = 6 * 3600  # a job another worker runs ends within the gpu time limit
INTERRUPTED = "interrupted: the demo build stopped before this job finished"

BUILT, ALREADY_BUILT, SKIPPED = "built", "already_built", "skipped"


class DemoError(DomainError):
    """The demo cannot be built; the message says why."""


@dataclass
class DemoResult:
    status: str  # BUILT, ALREADY_BUILT or SKIPPED
    message: str  # one line for the terminal
    gating_version_id: int | None = None  # the demo's production gating version
    accuracy: float | None = None  # its summary test accuracy
    utilization: float | None = None  # its expert utilisation
    experts: dict[str, float] = field(default_factory=dict)  # domain -> expert test accuracy


def _worker_name() -> str:
    return f"demo@{socket.gethostname()}"


class DemoStep:
    """One stage of the build with a known amount of work; silent here."""

    def advance(self, n: int = 1) -> None:
        """n more units of the stage are done."""

    def note(self, text: str) -> None:
        """What the stage is doing now."""


class DemoProgress:
    """Where the build reports as it goes; this base is silent (prepare_demo draws bars)."""

    @contextlib.contextmanager
    def building(self, message: str) -> Iterator[None]:
        """Around the whole build, entered only when there is work to do."""
        yield

    @contextlib.contextmanager
    def step(self, desc: str, *, total: int) -> Iterator[DemoStep]:
        yield DemoStep()


# Who and what belongs to the demo -----------------------------------------------------------


def _demo_users():
    return User.objects.filter(username__in=DEMO_CONTRIBUTORS.values(),
                               email__endswith="@" + DEMO_EMAIL_DOMAIN)


def _is_demo_version(version: GatingVersion, demo_user_ids: set[int]) -> bool:
    members = version.members_in_order()
    return bool(members) and all(m.expert_version.expert.owner_id in demo_user_ids
                                 for m in members)


def demo_production() -> GatingVersion | None:
    """The demo's gating version if it is the one in production."""
    from gating.selectors import production_version

    version = production_version()
    if version is None:
        return None
    demo_ids = set(_demo_users().values_list("pk", flat=True))
    return version if _is_demo_version(version, demo_ids) else None


def _demo_promoted_before() -> GatingVersion | None:
    demo_ids = set(_demo_users().values_list("pk", flat=True))
    if not demo_ids:
        return None
    promoted = GatingVersion.objects.filter(promotions__isnull=False).distinct()
    return next((v for v in promoted if _is_demo_version(v, demo_ids)), None)


def _result_of(version: GatingVersion, status: str, message: str) -> DemoResult:
    report = version.report or {}
    experts = {m.expert_version.expert.domain.name: m.expert_version.metrics.get("test_accuracy")
               for m in version.members_in_order()}
    return DemoResult(status=status, message=message, gating_version_id=version.pk,
                      accuracy=(report.get("summary") or {}).get("accuracy"),
                      utilization=(report.get("routing") or {}).get("utilization"),
                      experts=experts)


# The data -----------------------------------------------------------------------------------


def _read_rows(path: Path, labels: list[str]) -> list[tuple[str, str]]:
    from experts.ml.data import read_jsonl

    return read_jsonl(path, labels) if path.is_file() else []


def _write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n"
                            for t, y in rows), encoding="utf-8")


def _capped_folder(src: Path, dest: Path, *, max_train: int) -> Path:
    """src itself when it is small enough, else a deterministic capped copy in dest.

    Train keeps max_train rows (stratified); dev and test keep EVAL_ROWS each. A folder with no
    test.jsonl (only train and dev) gets a test split carved out of its dev rows, disjoint from
    the dev rows kept, so the demo is scored on rows nothing was trained or tuned on.
    """
    from experts.ml.data import subsample

    labels = json.loads((src / "domain.json").read_text(encoding="utf-8"))["labels"]
    train = _read_rows(src / "train.jsonl", labels)
    dev = _read_rows(src / "dev.jsonl", labels)
    test = _read_rows(src / "test.jsonl", labels)
    if test and len(train) <= max_train and len(dev) <= EVAL_ROWS and len(test) <= EVAL_ROWS:
        return src
    if not test:
        # Index pairs keep duplicate texts apart while sampling.
        picked = subsample([(i, y) for i, (_, y) in enumerate(dev)],
                           min(EVAL_ROWS, len(dev) // 2), seed=0)
        kept = {i for i, _ in picked}
        rest = [row for i, row in enumerate(dev) if i not in kept]
        dev, test = [dev[i] for i, _ in picked], rest
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "domain.json").write_bytes((src / "domain.json").read_bytes())
    _write_rows(dest / "train.jsonl", subsample(train, max_train, seed=0))
    _write_rows(dest / "dev.jsonl", subsample(dev, EVAL_ROWS, seed=0))
    _write_rows(dest / "test.jsonl", subsample(test, EVAL_ROWS, seed=1))
    return dest


def _demo_folders(data_dir: Path | None, max_train: int) -> dict[str, Path]:
    src = Path(data_dir) if data_dir is not None else SAMPLE_DATA_DIR
    missing = [name for name in DEMO_CONTRIBUTORS if not (src / name / "domain.json").is_file()]
    if missing:
        raise DemoError(f"{src} has no {', '.join(missing)} domain folder(s); the demo needs "
                        f"{', '.join(DEMO_CONTRIBUTORS)}")
    from experts.ml.data import DomainDataError

    scratch = Path(settings.VAR_DIR) / "demo-data"
    try:
        return {name: _capped_folder(src / name, scratch / name, max_train=max_train)
                for name in DEMO_CONTRIBUTORS}
    except (DomainDataError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise DemoError(f"cannot read the demo data in {src}: {exc}") from None


def _split_hashes(folder: Path, labels: list[str]) -> dict[str, str]:
    """The sha256 the import service would record for each split file of a folder."""
    from experts.services import MAX_DATASET_ROWS

    hashes = {}
    for kind in DataSplit.Kind.values:
        file = folder / f"{kind}.jsonl"
        if file.is_file():
            try:
                hashes[kind] = parse_dataset([file.read_bytes()], filename=file.name,
                                             labels=labels, max_rows=MAX_DATASET_ROWS
                                             ).sha256
            except DatasetError as exc:
                raise DemoError(f"{file}: {exc}") from None
    return hashes


def _conflict(folders: dict[str, Path]) -> str | None:
    """Why the demo must leave this installation alone, or None."""
    demo_users = _demo_users()
    own = Expert.objects.exclude(owner__in=demo_users).count()
    if own:
        return (f"this installation already has {own} expert(s) of its own; the demo only "
                "fills an empty installation")
    taken = (User.objects.filter(username__in=DEMO_CONTRIBUTORS.values())
             .exclude(pk__in=demo_users.values("pk")).values_list("username", flat=True))
    if taken:
        return f"the demo's account name(s) {', '.join(sorted(taken))} belong to real users"
    for name, folder in folders.items():
        domain = Domain.objects.filter(name=name).first()
        if domain is None:
            continue
        labels = json.loads((folder / "domain.json").read_text(encoding="utf-8"))["labels"]
        if domain.created_by_id is not None or domain.labels != labels:
            return f"a domain named {name!r} already exists and is not the demo's"
        ours = _split_hashes(folder, labels)
        for split in domain.splits.all():
            if ours.get(split.kind) != split.sha256:
                return (f"domain {name!r} already holds other {split.kind} data (an earlier "
                        "demo from another data folder?); the demo does not replace it")
    return None


# The steps ----------------------------------------------------------------------------------


def _run(job_id: int) -> Job:
    """Run a queued job here (or wait for the worker that took it); return it finished."""
    job = Job.objects.get(pk=job_id)
    if job.status == Job.Status.RUNNING and job.worker == _worker_name():
        job.fail(INTERRUPTED, settle=False)  # an earlier build died: resumed below
        return job
    try:
        run_job(job_id, worker=_worker_name())
    except BaseException:
        # Ctrl-C inside a handler: the job must not stay "running" for ever.
        # The next build resumes what this job worked on, so it is not settled here.
        Job.objects.get(pk=job_id).fail(INTERRUPTED, settle=False)
        raise
    job.refresh_from_db()
    deadline = time.monotonic() + WAIT_FOR_WORKER_S
    while not job.is_finished and time.monotonic() < deadline:
        time.sleep(1.0)
        job.refresh_from_db()
    return job


def _job_failure(job: Job) -> str:
    return (job.error or job.status).splitlines()[0][:300]


def _contributor(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User.objects.create_user(username=username, password=None,
                                        email=f"{username}@{DEMO_EMAIL_DOMAIN}")
        user_add_role(user=user, role=CONTRIBUTOR)
    return user


def _train_and_upload(expert: Expert, folder: Path, *, seed: int,
                      on_progress: Callable[[int, int, str], None]) -> ExpertVersion:
    """The contributor's side: train a head expert with the engine, upload its artifact."""
    from experts import services
    from experts.ml.artifact import MANIFEST_NAME, WEIGHTS_NAME, save_expert
    from experts.ml.data import load_domain_dir
    from experts.runtime import worker_backbone, worker_feature_cache
    from training.ml.expert_train import ExpertTrainConfig, train_expert

    backbone = worker_backbone()
    data = load_domain_dir(folder)
    data.test = []  # the contributor never sees the private test split
    trained = train_expert(ExpertTrainConfig(kind="head", seed=seed,
                                             device=settings.MOECOLLAB_DEVICE),
                           backbone=backbone, cache=worker_feature_cache(), domain=data,
                           on_progress=on_progress)
    with tempfile.TemporaryDirectory() as tmp:
        out = save_expert(trained.expert, Path(tmp), backbone=backbone,
                          training={**trained.training, "trained_by": "the demo"},
                          metrics=trained.metrics,
                          extra={"name": expert.name, "description": expert.description})
        return services.expert_version_upload(
            user=expert.owner, expert=expert,
            manifest=SimpleUploadedFile(MANIFEST_NAME, (out / MANIFEST_NAME).read_bytes()),
            weights=SimpleUploadedFile(WEIGHTS_NAME, (out / WEIGHTS_NAME).read_bytes()))


def _revalidate(version: ExpertVersion) -> ExpertVersion:
    """Queue a new validation job for a version whose validation an interrupted build lost."""
    from training.services import job_create

    with transaction.atomic():
        job = job_create(kind=Job.Kind.VALIDATE_EXPERT, user=version.expert.owner,
                         params={"version_id": version.pk})
        version.mark_validating(validation_job=job.pk)
    version.refresh_from_db()
    return version


def _demo_expert(name: str, folder: Path, *, maintainer, step: DemoStep) -> ExpertVersion:
    """One approved expert for a domain: reuse, resume or build it (4 units of the step)."""
    from experts import services

    domain = Domain.objects.get(name=name)
    user = _contributor(DEMO_CONTRIBUTORS[name])
    expert = Expert.objects.filter(owner=user, domain=domain).first() or services.expert_create(
        user=user, domain=domain, name=f"{name}-head",
        description=f"Head expert for {name}, trained on the demo data. {domain.description}",
        intended_use="Demonstration of the platform.", training_data=f"the {name} train split")
    versions = list(expert.versions.order_by("-number"))
    version = next((v for v in versions if v.status == ExpertVersion.Status.APPROVED), None)
    if version is not None:
        step.advance(4)
        return version
    version = next((v for v in versions if v.status in (
        ExpertVersion.Status.VALIDATING, ExpertVersion.Status.AWAITING_REVIEW,
        ExpertVersion.Status.CHANGES_REQUESTED)), None)
    if version is None:
        step.note(f"{name}: training")
        version = _train_and_upload(
            expert, folder, seed=len(versions),
            on_progress=lambda done, total, msg: step.note(
                f"{name}: {msg}" + ("" if "/" in msg else f" {done}/{total}")))
    step.advance(2)
    if version.status == ExpertVersion.Status.VALIDATING:
        step.note(f"{name}: validating")
        job = _run(version.training_params["validation_job"])
        if job.error == INTERRUPTED:
            job = _run(_revalidate(version).training_params["validation_job"])
        version.refresh_from_db()
        if version.status != ExpertVersion.Status.AWAITING_REVIEW:
            raise DemoError(f"the demo expert {version.label} failed validation: "
                            f"{version.error or _job_failure(job)}")
    step.advance(1)
    version = services.expert_version_review(
        user=maintainer, version=version, action="approve",
        comment="Approved by the demo set-up.")
    step.advance(1)
    return version


def _demo_gating(versions: list[ExpertVersion], *, maintainer, max_train: int,
                 step: DemoStep) -> GatingVersion:
    """Train (or resume), evaluate and promote a gating model of exactly these experts."""
    from gating import services as gating_services
    from training.services import job_create

    ids = sorted(v.pk for v in versions)
    gating = next((g for g in GatingVersion.objects.select_related("train_job", "eval_job")
                   if sorted(m.expert_version_id for m in g.members.all()) == ids
                   and g.display_status != GatingVersion.Status.FAILED), None)

    def start() -> GatingVersion:
        job = gating_services.gating_train_start(
            user=maintainer, expert_version_ids=ids,
            params={"max_train_per_domain": max_train})
        return GatingVersion.objects.get(pk=job.params["gating_version_id"])

    gating = gating or start()
    if gating.status == GatingVersion.Status.TRAINING:
        job = _run(gating.train_job_id)
        if job.error == INTERRUPTED:  # an earlier build died while training it
            gating = start()
            job = _run(gating.train_job_id)
        if job.status != Job.Status.SUCCEEDED:
            raise DemoError(f"training gating v{gating.number} failed: {_job_failure(job)}")
        gating.refresh_from_db()
    step.advance(1)
    if gating.status == GatingVersion.Status.TRAINED:
        job = _run(gating.eval_job_id)
        if job.error == INTERRUPTED:
            job = _run(job_create(kind=Job.Kind.EVALUATE, user=maintainer,
                                  params={"gating_version_id": gating.pk}).pk)
        if job.status != Job.Status.SUCCEEDED:
            raise DemoError(f"evaluating gating v{gating.number} failed: {_job_failure(job)}")
        gating.refresh_from_db()
    step.advance(1)
    gating_services.gating_promote(version=gating, user=maintainer)
    step.advance(1)
    # Promotion (and each approval) queued a leaderboard refresh; run them so the boards are
    # filled when the web server starts, worker or not.
    for job_id in Job.objects.filter(kind=Job.Kind.REFRESH_LEADERBOARDS,
                                     status=Job.Status.QUEUED).values_list("pk", flat=True):
        _run(job_id)
    step.advance(1)
    gating.refresh_from_db()
    return gating


def demo_prepare(*, maintainer, data_dir: Path | None = None, max_train: int = 1500,
                 progress: DemoProgress | None = None) -> DemoResult:
    """Build the demo, resume a half-built one, or say why it is already there or skipped.

    data_dir: a folder of domain folders laid out like experts/demo_data (None: the sample set kept
    in experts/demo_data). progress: what reports each step (None: silent).
    """
    version = demo_production()
    if version is not None:
        return _result_of(version, ALREADY_BUILT,
                          f"demo already built: gating v{version.number} is in production")
    from gating.selectors import production_version

    if production_version() is not None:
        return DemoResult(status=SKIPPED, message="demo skipped: a gating model of this "
                          "installation's own is in production")
    earlier = _demo_promoted_before()
    if earlier is not None:
        # A maintainer rolled the demo back; putting it back on every start would undo that.
        return _result_of(earlier, ALREADY_BUILT,
                          f"demo already built (gating v{earlier.number}), and rolled back "
                          "since; leaving production as it is")
    if max_train < 10:
        raise DemoError("max_train must be at least 10 rows per domain")
    folders = _demo_folders(data_dir, max_train)
    reason = _conflict(folders)
    if reason is not None:
        return DemoResult(status=SKIPPED, message=f"demo skipped: {reason}")
    from experts import services  # imports torch: only once there is work to do

    progress = progress or DemoProgress()
    source = data_dir if data_dir is not None else "the bundled sample set"
    with progress.building(f"Preparing the demo from {source} (train rows per domain ≤ "
                           f"{max_train}):"):
        with progress.step("1/3 import domains", total=len(folders)) as step:
            for name, folder in folders.items():
                step.note(name)
                services.domain_import_folder(path=folder)
                step.advance(1)
        with progress.step("2/3 experts", total=4 * len(folders)) as step:
            experts = [_demo_expert(name, folder, maintainer=maintainer, step=step)
                       for name, folder in folders.items()]
        with progress.step("3/3 gating model", total=4) as step:
            gating = _demo_gating(experts, maintainer=maintainer, max_train=max_train,
                                  step=step)
    return _result_of(gating, BUILT, f"demo built: gating v{gating.number} is in production")

