"""`moecollab push`, `status`, `pull` and `predict`: the platform, through its REST API."""
from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
import zipfile
from pathlib import Path

import click

from experts.ml.common import atomic_write_bytes
from experts.ml.upload_checks import DEFAULT_MAX_BYTES, MANIFEST_NAME, WEIGHTS_NAME
from moecollab_cli.client import Api, ApiError
from moecollab_cli.local import require_artifact, run_checks
from moecollab_cli.output import CliError, Output, check_line, json_option
from moecollab_cli.session import Session, fetch_platform, open_session

# Version states in which validation is over (VersionStatusEnum of the OpenAPI schema).
VALIDATION_DONE = {"awaiting_review", "approved", "invalid", "cancelled", "rejected",
                   "changes_requested", "retired"}
VALIDATION_FAILED = {"invalid", "cancelled", "rejected"}
url_option = click.option("--url", help="The platform (default: MOECOLLAB_URL, else the one "
                                        "you logged in to).")


def split_ref(ref: str) -> tuple[str, int | None]:
    """EXPERT[@VERSION] -> (EXPERT, VERSION or None)."""
    name, sep, number = ref.rpartition("@")
    if sep and number.isdigit():
        return name, int(number)
    return ref, None


def find_expert(session: Session, ref: str) -> dict:
    """An expert named by its id (12, or "#12" quoted), OWNER/NAME, or NAME (yours first)."""
    api = session.api
    if re.fullmatch(r"#?\d+", ref):
        try:
            return api.get(f"experts/{ref.lstrip('#')}/")
        except ApiError as exc:
            if exc.status == 404:
                raise CliError(f"no expert #{ref.lstrip('#')} on {api.url}",
                               code="not_found") from None
            raise
    owner, _, name = ref.partition("/") if "/" in ref else (None, "", ref)
    found = [e for e in api.pages("experts/", q=name) if e["name"] == name
             and owner in (None, e["owner"])]
    if not found and owner is not None:  # a name may contain "/" itself
        found = [e for e in api.pages("experts/", q=ref) if e["name"] == ref]
    mine = [e for e in found if e["owner"] == session.username]
    if len(mine) == 1 or len(found) == 1:
        return (mine or found)[0]
    if not found:
        raise CliError(f"no expert named {ref!r} on {api.url}", code="not_found")
    options = ", ".join(f"{e['owner']}/{e['name']} (#{e['id']})" for e in found)
    raise CliError(f"{ref!r} names several experts: {options}; say which as OWNER/NAME or "
                   "ID", code="ambiguous")


def format_metrics(metrics: dict) -> list[str]:
    """One line a metric; the evaluation's accuracy and macro-F1 with the n they rest on."""
    n, split = metrics.get("n_eval"), metrics.get("eval_split", "evaluation")
    lines = []
    for key, value in metrics.items():
        if key in ("n_eval", "eval_split"):
            continue
        text = f"{value:.4f}" if isinstance(value, float) else json.dumps(value)
        if n is not None and key.startswith(("test_", "dev_")) and key.endswith(
                ("accuracy", "macro_f1")):
            text += f" (n={n} {split} examples)"
        lines.append(f"  {key} = {text}")
    return lines


def _manifest(folder: Path) -> dict:
    try:
        m = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {folder / MANIFEST_NAME}: {exc}", code="invalid_artifact") \
            from None
    return m if isinstance(m, dict) else {}


def _own_expert(session: Session, *, name: str, domain: str, manifest: dict, ui: Output
                ) -> tuple[dict, bool]:
    """The caller's expert of that name, created for `domain` if they have none."""
    api = session.api
    for expert in api.pages("experts/", owner=session.username, q=name):
        if expert["name"] == name and expert["owner"] == session.username:
            if expert["domain"] != domain:
                raise CliError(f"your expert {name!r} (#{expert['id']}) is for domain "
                               f"{expert['domain']!r}, not {domain!r}: pass --expert with "
                               "another name", code="conflict")
            return expert, False
    body = {"domain": domain, "name": name, "description": manifest.get("description") or ""}
    if isinstance(manifest.get("license"), str) and len(manifest["license"]) <= 100:
        body["license"] = manifest["license"]
    expert = api.post("experts/", body)
    ui.say(f"created expert {expert['name']!r} (#{expert['id']}) for domain {domain}")
    return expert, True


def _wait(api: Api, expert_id: int, version: dict, *, timeout: float, ui: Output) -> dict:
    deadline = time.monotonic() + timeout
    seen = version["status"]
    while version["status"] not in VALIDATION_DONE:
        if time.monotonic() > deadline:
            raise CliError(f"version {version['number']} is still {version['status']} after "
                           f"{timeout:.0f}s; see `moecollab status {expert_id}` later",
                           code="timeout")
        time.sleep(2)
        version = api.get(f"experts/{expert_id}/versions/{version['number']}/")
        if version["status"] != seen:
            seen = version["status"]
            ui.say(f"  ... {seen}")
    return version


def _print_version(ui: Output, version: dict) -> None:
    ui.say(f"version {version['number']}: {version['status']} ({version.get('kind') or '?'}, "
           f"{version.get('size_bytes', 0) / 2**20:.2f} MiB, sha256 "
           f"{(version.get('weights_sha256') or '-')[:12]})")
    for check in version.get("checks") or []:
        ui.say("  " + check_line(check))
    for line in format_metrics(version.get("metrics") or {}):
        ui.say(line)
    if version.get("error"):
        ui.say(f"  error: {version['error']}")


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--domain", help="The domain the expert is for (default: the manifest's).")
@click.option("--expert", "expert_name",
              help="Your expert to add a version to; created if you have none of that name "
                   "(default: the manifest's name, else DOMAIN-KIND).")
@click.option("--wait", is_flag=True, help="Wait for the validation job and print its checks "
                                           "and metrics.")
@click.option("--timeout", type=click.FloatRange(min=1), default=900, show_default=True,
              help="Seconds --wait waits.")
@url_option
@json_option
def push(folder: Path, domain: str | None, expert_name: str | None, wait: bool, timeout: float,
         url: str | None, ui: Output) -> None:
    """Upload an artifact folder as a new version of your expert.

    The platform's upload checks run here first (nothing is sent if one fails); then the
    artifact is uploaded with a progress bar. With --wait, exits 1 if validation fails.
    """
    manifest_path, weights_path = require_artifact(folder)
    session = open_session(url, need_token=True)
    if not session.username:
        raise CliError("push needs your user name: run `moecollab login --username NAME`",
                       code="not_logged_in")
    api = session.api
    platform = fetch_platform(api) or (session.login.platform if session.login else None)
    max_bytes = (platform or {}).get("upload_max_bytes") or DEFAULT_MAX_BYTES
    checks = run_checks(folder, platform, max_bytes=max_bytes)
    failed = [c for c in checks if not c["ok"]]
    if failed:
        for check in checks:
            ui.say(check_line(check))
        raise CliError(f"not uploaded: {failed[0]['name']}: {failed[0]['message']}",
                       code="invalid_artifact")
    manifest = _manifest(folder)
    domain = domain or manifest.get("domain")
    name = expert_name or manifest.get("name") or f"{domain}-{manifest.get('kind')}"
    expert, created = _own_expert(session, name=name, domain=domain, manifest=manifest, ui=ui)
    files = {"manifest": manifest_path, "weights": weights_path}
    total = sum(p.stat().st_size for p in files.values())
    with ui.bar(total, f"uploading to {expert['name']}", unit="B") as bar:
        version = api.upload(f"experts/{expert['id']}/versions/", files, progress=bar.update)
    ui.say(f"uploaded version {version['number']} of {expert['name']!r} (#{expert['id']}): "
           f"{version['status']}")
    if wait:
        version = _wait(api, expert["id"], version, timeout=timeout, ui=ui)
    result = {"expert": expert, "created_expert": created, "version": version}
    ui.result(result, lambda: _print_version(ui, version) if wait else None)
    if wait and version["status"] in VALIDATION_FAILED:
        ui.exit_failed(f"validation {version['status']}: "
                       f"{version.get('error') or 'see the checks above'}")


@click.command()
@click.argument("expert", required=False)
@url_option
@json_option
def status(expert: str | None, url: str | None, ui: Output) -> None:
    """Your experts and their latest versions; or, for EXPERT[@VERSION], its versions, checks
    and metrics. EXPERT is NAME (yours first), OWNER/NAME or the numeric ID."""
    session = open_session(url)
    api = session.api
    if expert is None:
        if not session.username:
            raise CliError("log in with `moecollab login --username NAME` to list your "
                           "experts, or name one: moecollab status EXPERT", code="not_logged_in")
        experts = list(api.pages("experts/", owner=session.username))

        def human() -> None:
            if not experts:
                ui.say(f"{session.username} has no experts on {api.url} yet")
            for e in experts:
                v = e.get("latest_version") or {}
                latest = f"v{v['number']} {v['status']}" if v else "no versions"
                ui.say(f"{e['name']} (#{e['id']}, {e['domain']}): {latest}")
                for line in format_metrics(v.get("metrics") or {}):
                    ui.say("  " + line)

        ui.result({"experts": experts}, human)
        return
    ref, number = split_ref(expert)
    found = find_expert(session, ref)
    versions = api.get(f"experts/{found['id']}/versions/")
    if number is not None:
        chosen = [v for v in versions if v["number"] == number]
        if not chosen:
            raise CliError(f"{found['name']!r} has no version {number} that you can see",
                           code="not_found")
        versions = chosen

    def show() -> None:
        ui.say(f"{found['owner']}/{found['name']} (#{found['id']}), domain {found['domain']}")
        if not versions:
            ui.say("no versions yet")
        for v in sorted(versions, key=lambda v: v["number"], reverse=True):
            _print_version(ui, v)

    ui.result({"expert": found, "versions": versions}, show)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "expert"


# What a version's folder (GET .../download/?file=folder, a zip) may hold; nothing else is
# written. A LoRA expert's is PEFT's own folder, which PeftModel.from_pretrained loads as is.
FOLDER_FILES = (MANIFEST_NAME, "README.md", WEIGHTS_NAME, "adapter_config.json",
                "adapter_model.safetensors")
WEIGHT_FILES = (WEIGHTS_NAME, "adapter_model.safetensors")


def _unpack(archive: Path, *, cap: int) -> dict[str, bytes]:
    """The known files of a version's folder zip, each at most `cap` bytes; refuses the rest."""
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename.split("/")[-1]
            if name not in FOLDER_FILES or info.filename.count("/") > 1:
                raise CliError(f"the downloaded folder holds an unexpected file "
                               f"{info.filename!r}; nothing was written", code="corrupt")
            if info.file_size > cap:
                raise CliError(f"{info.filename} in the downloaded folder is {info.file_size} "
                               f"bytes, more than the version's {cap}", code="corrupt")
            files[name] = zf.read(info)  # the zip's CRC is checked on read
    return files


@click.command()
@click.argument("expert")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the artifact to (default: ./NAME-vVERSION).")
@click.option("--force", is_flag=True, help="Overwrite an artifact already in --out.")
@url_option
@json_option
def pull(expert: str, out_dir: Path | None, force: bool, url: str | None, ui: Output) -> None:
    """Download a version's folder: manifest.json, the weights and its model card (README.md).

    EXPERT[@VERSION]: NAME (yours first), OWNER/NAME or the numeric ID; without @VERSION the
    newest version you may download. A LoRA expert's folder is the one PEFT writes. The
    weights' sha256 is checked against the platform's record.
    """
    session = open_session(url)
    api = session.api
    ref, number = split_ref(expert)
    found = find_expert(session, ref)
    versions = [v for v in api.get(f"experts/{found['id']}/versions/")
                if v.get("weights_sha256") and (number is None or v["number"] == number)]
    if not versions:
        which = f"version {number}" if number is not None else "a version with weights"
        raise CliError(f"{found['owner']}/{found['name']} has no {which} that you may "
                       "download", code="not_found")
    version = max(versions, key=lambda v: v["number"])
    folder = out_dir or Path(f"{_safe_name(found['name'])}-v{version['number']}")
    if not force and any((folder / name).exists() for name in FOLDER_FILES):
        raise CliError(f"{folder} already holds an artifact; pass --force to overwrite it",
                       code="exists")
    path = f"experts/{found['id']}/versions/{version['number']}/download/"
    with tempfile.TemporaryDirectory() as tmp, ui.bar(
            None, f"downloading v{version['number']}", unit="B") as bar:
        archive = Path(tmp) / "folder.zip"
        api.download(path, archive, params={"file": "folder"}, progress=bar.update)
        files = _unpack(archive, cap=(version.get("size_bytes") or 0) + 2**21)
    weights = next((files[n] for n in WEIGHT_FILES if n in files), b"")
    digest = hashlib.sha256(weights).hexdigest()
    if digest != version["weights_sha256"]:
        raise CliError(f"downloaded weights have sha256 {digest}, the platform recorded "
                       f"{version['weights_sha256']}; nothing was written", code="corrupt")
    for name, data in files.items():
        atomic_write_bytes(folder / name, data)
    result = {"expert": found, "version": version["number"], "folder": str(folder),
              "files": sorted(files), "sha256": digest}
    ui.result(result, lambda: ui.say(
        f"downloaded {found['owner']}/{found['name']} v{version['number']} "
        f"({version['status']}) to {folder}: {', '.join(sorted(files))}; sha256 verified"))


@click.command()
@click.argument("texts", nargs=-1, required=True)
@url_option
@json_option
def predict(texts: tuple[str, ...], url: str | None, ui: Output) -> None:
    """Classify TEXTS with the platform's production model."""
    api = open_session(url).api
    answer = api.post("predict/", {"texts": list(texts)})

    def human() -> None:
        ui.say(f"production gating v{answer['gating_version']} ({answer['ms']:.0f} ms):")
        for text, p in zip(texts, answer["predictions"], strict=True):
            experts = ", ".join(f"{e['name']} {e['weight']:.2f}" for e in p["experts"])
            ui.say(f"{text!r} -> {p['domain']}/{p['label']} ({p['confidence']:.2f}; "
                   f"experts: {experts})")

    ui.result(answer, human)

