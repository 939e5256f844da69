"""Hostile uploads through the API: every one is refused with a 4xx naming the problem, and
leaves no rows and no files behind (or, for odd file names, is stored under a safe name).

tests/experts/test_api.py covers the basic refusals; these go further: each layout attack on
the safetensors header, dtypes, NaN and Inf, manifest fields, file names sent verbatim, the size
cap before reading, and datasets on all three endpoints that take one.
"""
from __future__ import annotations

import json
import math
import re
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from experts.models import DataSplit, ExpertRequest, ExpertVersion
from tests.helpers import api_client_for, media_files
from tests.security.multipart import (
    CONTENT_TYPE,
    StreamedInput,
    multipart,
    streamed_file_body,
)
from training.models import Job

MiB = 1024 * 1024


def _nothing_left(media_root: Path) -> None:
    assert ExpertVersion.objects.count() == 0
    assert Job.objects.count() == 0
    assert DataSplit.objects.count() == 0
    assert ExpertRequest.objects.count() == 0
    assert media_files(media_root) == []


def _refusal(response, status: int, fragment: str) -> str:
    assert response.status_code == status, response.content[:500]
    message = response.json()["error"]["message"]
    assert fragment in message, message
    return message


# Artifacts ---------------------------------------------------------------------------------

def _split(weights: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", weights[:8])
    return json.loads(weights[8:8 + n]), weights[8 + n:]


def _join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _header_edit(edit):
    def mutate(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
        header, data = _split(weights)
        edit(header)
        return manifest, _join(header, data)
    return mutate


def _manifest_edit(edit):
    def mutate(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
        m = json.loads(manifest)
        edit(m)
        return json.dumps(m).encode(), weights
    return mutate


def _poke(value: float, tensor: str = "head.fc1.weight", index: int = 7):
    """Write one float32 into a tensor's data."""
    def mutate(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
        header, data = _split(weights)
        at = header[tensor]["data_offsets"][0] + 4 * index
        data = data[:at] + struct.pack("<f", value) + data[at + 4:]
        return manifest, _join(header, data)
    return mutate


def _bytes(edit):
    return lambda manifest, weights: (manifest, edit(weights))


def _set_dtype(dtype: str, tensor: str = "head.fc2.bias"):
    return _header_edit(lambda h: h[tensor].update(dtype=dtype))


def _overlap(h: dict) -> None:
    begin = h["head.fc1.weight"]["data_offsets"][0] + 40
    h["head.fc2.bias"]["data_offsets"] = [begin, begin + 16]


def _huge_real_header(weights: bytes) -> bytes:
    header, data = _split(weights)
    header["__metadata__"] = {"format": "pt", "padding": "x" * (2 * MiB)}
    return _join(header, data)


def _transpose(h: dict) -> None:
    h["head.fc1.weight"]["shape"] = h["head.fc1.weight"]["shape"][::-1]


def _transpose_both(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
    manifest, weights = _header_edit(_transpose)(manifest, weights)
    return _manifest_edit(lambda m: _transpose(m["tensors"]))(manifest, weights)


def _drop(path: str):
    def edit(m: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            m = m[key]
        del m[last]
    return _manifest_edit(edit)


def _manifest_raw(path: str, raw: str):
    """Set a manifest field to raw JSON text that json.dumps could not write (too deep, ...)."""
    def mutate(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
        m = json.loads(manifest)
        *parents, last = path.split(".")
        target = m
        for key in parents:
            target = target[key]
        target[last] = "@RAW@"
        return json.dumps(m).replace('"@RAW@"', raw).encode(), weights
    return mutate


def _header_raw(tensor: str, key: str, raw: str):
    """Set a header entry's field to raw JSON text."""
    def mutate(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
        header, data = _split(weights)
        header[tensor][key] = "@RAW@"
        text = json.dumps(header).replace('"@RAW@"', raw).encode()
        return manifest, struct.pack("<Q", len(text)) + text + data
    return mutate


def _as_branch_with_list_fields(m: dict) -> None:
    from experts.ml.modules import LAYER_CONFIG_KEYS

    m.update(kind="branch", split_layer=m["backbone"]["num_layers"] - 1)
    m["architecture"].update(n_branch_layers=1,
                             layer_config={k: ["bert"] for k in LAYER_CONFIG_KEYS})


DEEP = "[" * 10_000 + "]" * 10_000
BIG_INT = "7" * 5000


def _drop_tensor(manifest: bytes, weights: bytes) -> tuple[bytes, bytes]:
    """Remove the last tensor of the data section, header entry and bytes."""
    header, data = _split(weights)
    begin = header.pop("head.norm.weight")["data_offsets"][0]
    return manifest, _join(header, data[:begin])


ARTIFACT_CASES = {
    # safetensors layout
    "truncated below the length prefix": (_bytes(lambda w: w[:5]), 400,
                                          "truncated file: 5 bytes"),
    "truncated inside the header": (_bytes(lambda w: w[:100]), 400,
                                    "declared but the file holds 100 bytes"),
    "truncated inside the data": (_bytes(lambda w: w[:-1]), 400, "truncated file: tensor"),
    "header length larger than the file": (
        _bytes(lambda w: struct.pack("<Q", len(w)) + w[8:]), 400,
        "declared but the file holds"),
    "header length claiming 100 MB": (
        _bytes(lambda w: struct.pack("<Q", 100 * MiB) + w[8:]), 400,
        "oversized header: 104857600 bytes declared, the limit is"),
    "a real 2 MB JSON header": (_bytes(_huge_real_header), 400, "oversized header"),
    "header that is not JSON": (
        _bytes(lambda w: w[:8] + b"\xff" * 20 + w[28:]), 400, "header is not valid JSON"),
    "overlapping offsets": (_header_edit(_overlap), 400, "overlapping data offsets"),
    "offsets past the end": (
        _header_edit(lambda h: h["head.norm.weight"].update(
            data_offsets=[10**12, 10**12 + 1536])), 400, "out-of-range offsets"),
    "negative offsets": (
        _header_edit(lambda h: h["head.fc2.bias"].update(data_offsets=[-16, 0])), 400,
        "invalid data offsets"),
    "unused bytes after the tensors": (_bytes(lambda w: w + b"\0" * 64), 400,
                                       "unexpected bytes after the last tensor"),
    "extra key in a header entry": (
        _header_edit(lambda h: h["head.fc2.bias"].update(pickle="cos\nsystem")), 400,
        "needs exactly dtype, shape, data_offsets"),
    # dtypes
    "dtype I64": (_set_dtype("I64"), 400, "dtype I64; allowed dtypes: F32, F16, BF16"),
    "dtype F64": (_set_dtype("F64"), 400, "dtype F64; allowed dtypes"),
    "dtype unknown": (_set_dtype("O"), 400, "unknown dtype 'O'"),
    "dtype F64 in manifest and weights": (
        lambda m, w: _manifest_edit(lambda d: d["tensors"]["head.fc2.bias"].update(
            dtype="F64"))(m, w), 400, "manifest.tensors['head.fc2.bias'].dtype must be one of"),
    # values
    "NaN weight": (_poke(math.nan), 400, "tensor 'head.fc1.weight' contains NaN"),
    "Inf weight": (_poke(math.inf), 400, "tensor 'head.fc1.weight' contains Inf"),
    "-Inf weight": (_poke(-math.inf, tensor="head.norm.bias"), 400,
                    "tensor 'head.norm.bias' contains Inf"),
    # shapes and names against the manifest
    "weights shape disagrees with the manifest": (
        _header_edit(_transpose), 400,
        "tensor 'head.fc1.weight' has shape [384, 16] in the weights file but [16, 384]"),
    "shapes agree but not with the architecture": (
        _transpose_both, 400, "but the described architecture"),
    "tensor missing from the weights": (
        _drop_tensor, 400, "missing tensor 'head.norm.weight'"),
    "tensor the manifest does not list": (
        _manifest_edit(lambda m: m["tensors"].pop("head.fc2.bias")), 400,
        "unknown tensor 'head.fc2.bias'"),
    # manifest schema: extra fields
    "manifest extra top-level field": (
        _manifest_edit(lambda m: m.update(__class__="os.system")), 400,
        "manifest has unknown field '__class__'"),
    "manifest extra backbone field": (
        _manifest_edit(lambda m: m["backbone"].update(revision="main")), 400,
        "manifest.backbone has unknown field 'revision'"),
    "manifest extra architecture field": (
        _manifest_edit(lambda m: m["architecture"].update(activation="gelu")), 400,
        "manifest.architecture has unknown field 'activation'"),
    "manifest extra tensor spec field": (
        _manifest_edit(lambda m: m["tensors"]["head.fc2.bias"].update(offset=0)), 400,
        "must be an object with exactly dtype and shape"),
    # manifest schema: missing fields
    "manifest without tensors": (_drop("tensors"), 400, "manifest.tensors is required"),
    "manifest without labels": (_drop("labels"), 400, "manifest.labels is required"),
    "manifest without backbone fingerprint": (
        _drop("backbone.fingerprint"), 400, "manifest.backbone.fingerprint must be"),
    "manifest without architecture size": (
        _drop("architecture.mlp_hidden"), 400, "manifest.architecture.mlp_hidden must be"),
    "manifest that is a list": (lambda m, w: (b"[1, 2]", w), 400,
                                "manifest must be a JSON object"),
    # JSON that Python parses but cannot use, and values of the wrong type
    "manifest nested 10,000 deep": (
        _manifest_raw("training.notes", DEEP), 400,
        "manifest json: manifest nests arrays and objects more than 32 levels deep"),
    "manifest holding a 5,000-digit integer": (
        _manifest_raw("training.seed", BIG_INT), 400,
        "manifest json: manifest holds an integer of more than 4300 digits"),
    "manifest metric too large for a float": (
        _manifest_raw("metrics.dev_accuracy", "1" + "0" * 400), 400,
        "manifest.metrics must be an object whose values are finite numbers"),
    "manifest holding NaN": (_manifest_raw("training.loss", "NaN"), 400,
                             "manifest holds the number NaN, which is not a finite number"),
    "manifest holding a lone surrogate": (
        _manifest_edit(lambda m: m.update(description="caf\udce9")), 400,
        "manifest.description holds a lone surrogate (\\udce9)"),
    "manifest layer_config fields given as lists": (
        _manifest_edit(_as_branch_with_list_fields), 400,
        "manifest.architecture.layer_config.model_type must be one of bert, roberta"),
    "header dtype given as a list": (
        _header_edit(lambda h: h["head.fc2.bias"].update(dtype=["F32"])), 400,
        "tensor 'head.fc2.bias' has unknown dtype ['F32']"),
    "header dtype given as an object": (
        _header_edit(lambda h: h["head.fc2.bias"].update(dtype={"F32": 4})), 400,
        "tensor 'head.fc2.bias' has unknown dtype {'F32': 4}"),
    "header nested 10,000 deep": (
        _header_raw("head.fc2.bias", "shape", DEEP), 400,
        "safetensors header nests arrays and objects more than 32 levels deep"),
    "header holding a 5,000-digit integer": (
        _header_raw("head.fc2.bias", "data_offsets", f"[0, {BIG_INT}]"), 400,
        "safetensors header holds an integer of more than 4300 digits"),
    "header shape past 64 bits": (
        _header_edit(lambda h: h["head.fc2.bias"].update(shape=[10**3000, 10**3000])), 400,
        "tensor 'head.fc2.bias' has an invalid shape [1000"),
    "manifest over its size cap": (
        _manifest_edit(lambda m: m.update(description="x" * (2 * MiB))), 413,
        "manifest is 2.0 MiB; the limit is 1.0 MiB"),
}


@pytest.mark.parametrize("case", list(ARTIFACT_CASES))
def test_it_refuses_a_hostile_artifact_leaving_nothing(case, owner, expert, artifact,
                                                      media_root):
    mutate, status, fragment = ARTIFACT_CASES[case]
    manifest, weights = mutate(*artifact)
    response = api_client_for(owner).post(
        f"/api/v1/experts/{expert.pk}/versions/",
        {"manifest": SimpleUploadedFile("manifest.json", manifest),
         "weights": SimpleUploadedFile("weights.safetensors", weights)}, format="multipart")
    message = _refusal(response, status, fragment)
    assert response.json()["error"]["code"] == "invalid_artifact"
    assert re.match(r"^[a-z ]+: ", message), "the message starts with the check that failed"
    _nothing_left(media_root)


def test_it_refuses_a_weights_file_over_the_cap_without_reading_it(owner, expert, artifact,
                                                                 settings, media_root,
                                                                 monkeypatch):
    """Django streams big uploads to temporary files; the service looks at the declared size
    and refuses before reading a byte of the weights."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # every upload goes to a temporary file
    settings.MOECOLLAB_UPLOAD_MAX_BYTES = 4096
    reads: list[str] = []

    def spy(self):
        reads.append(self.name)
        return self.file.read

    monkeypatch.setattr(TemporaryUploadedFile, "read", property(spy))
    monkeypatch.setattr(TemporaryUploadedFile, "chunks",
                        lambda self, chunk_size=None: reads.append(self.name) or iter(()))
    manifest, weights = artifact
    response = api_client_for(owner).post(
        f"/api/v1/experts/{expert.pk}/versions/",
        {"manifest": SimpleUploadedFile("manifest.json", manifest),
         "weights": SimpleUploadedFile("weights.safetensors", weights)}, format="multipart")
    _refusal(response, 413, f"weights file is {len(weights)} bytes; the limit is 4096 bytes")
    assert "weights.safetensors" not in reads
    _nothing_left(media_root)


# File names sent verbatim -------------------------------------------------------------------

HOSTILE_NAMES = [
    ("../../etc/passwd", "..\\..\\x.safetensors"),
    ("/abs/path.json", "/abs/weights.safetensors"),
    ("....//....//manifest.json", "..%2f..%2fweights.safetensors"),
    ("man\x00ifest.json", "weights.safetensors\x00.exe"),
    ("a\nContent-Type: text/html\n.json", "w\r\neights.safetensors"),
    ("..", "."),
]


def _stored_names_are_safe(jail: Path, media_root: Path) -> list[str]:
    """Every file under the jail is inside MEDIA_ROOT; returns their names relative to it."""
    everything = [p for p in jail.rglob("*") if p.is_file()]
    outside = [p for p in everything if media_root not in p.parents]
    assert outside == [], f"written outside MEDIA_ROOT: {outside}"
    assert not Path("/abs").exists() and not Path("/etc/cron.d/evil.jsonl").exists()
    return [p.relative_to(media_root).as_posix() for p in everything]


@pytest.fixture
def jailed_media(settings, tmp_path) -> tuple[Path, Path]:
    """MEDIA_ROOT four levels down inside a jail folder, so '../' escapes would be caught."""
    jail = tmp_path / "jail"
    media = jail / "a" / "b" / "c" / "media"
    media.mkdir(parents=True)
    settings.MEDIA_ROOT = media
    return jail, media


@pytest.mark.parametrize(("manifest_name", "weights_name"), HOSTILE_NAMES)
def test_it_stores_artifacts_under_safe_names_whatever_the_upload_names(
        manifest_name, weights_name, owner, expert, artifact, jailed_media):
    jail, media = jailed_media
    body = multipart({}, {"manifest": (manifest_name, artifact[0]),
                          "weights": (weights_name, artifact[1])})
    response = api_client_for(owner).generic(
        "POST", f"/api/v1/experts/{expert.pk}/versions/", body, content_type=CONTENT_TYPE)
    stored = _stored_names_are_safe(jail, media)
    if response.status_code == 201:
        assert len(stored) == 2
        for name in stored:
            assert re.fullmatch(rf"experts/{expert.pk}/[0-9a-f]{{32}}/"
                                r"(manifest\.json|weights\.safetensors)", name), name
    else:
        assert 400 <= response.status_code < 500, response.content[:300]
        assert response.json()["error"]["message"]
        assert stored == [] and ExpertVersion.objects.count() == 0


# Datasets on every endpoint that takes one ----------------------------------------------------

def _endpoint(kind: str, users: dict, expert) -> tuple:
    """(client, url, form fields, file field) of a dataset-taking endpoint."""
    if kind == "split":
        return (api_client_for(users["maintainer"]), "/api/v1/domains/news/splits/",
                {"kind": "train"}, "file")
    if kind == "train":
        return (api_client_for(users["owner"]), f"/api/v1/experts/{expert.pk}/train/",
                {"kind": "head"}, "dataset")
    return (api_client_for(users["stranger"]), "/api/v1/requests/",
            {"title": "Need a news expert", "domain": "news"}, "dataset")


ENDPOINTS = ["split", "train", "request"]
GOOD_ROWS = b'{"text": "Stocks fell", "label": "Business"}\n{"text": "A goal", "label": "Sports"}\n'

DATASET_CASES = {
    "invalid UTF-8 in JSONL": (
        "d.jsonl", GOOD_ROWS + b'{"text": "\xc3\x28 bad", "label": "World"}\n',
        "line 3: not valid UTF-8"),
    "invalid UTF-8 in CSV": ("d.csv", b"text,label\nok,World\n\xff\xfe,World\n",
                             "line 3: not valid UTF-8"),
    "UTF-16 file": ("d.jsonl", '{"text": "a", "label": "World"}\n'.encode("utf-16"),
                    "line 1: not valid UTF-8"),
    "CSV without a label column": ("d.csv", b"text,topic\nhello,World\n",
                                   "line 1: missing column 'label' in the CSV header"),
    "CSV without any known column": ("d.csv", b"a,b\n1,2\n",
                                     "missing column 'text', 'label'"),
    "CSV row with too few fields": ("d.csv", b"text,label\nhello,World\nlonely\n",
                                    "line 3: 1 fields, the header has 2"),
    "JSON array instead of an object": ("d.jsonl", b'["Stocks fell", "Business"]\n',
                                        "line 1: expected an object"),
    "JSON string instead of an object": ("d.jsonl", GOOD_ROWS + b'"just text"\n',
                                         "line 3: expected an object"),
    "JSON number instead of an object": ("d.jsonl", b"42\n", "line 1: expected an object"),
    "JSON null instead of an object": ("d.jsonl", b"null\n", "line 1: expected an object"),
    "whole file one JSON array": (
        "d.json", b'[{"text": "a",\n "label": "World"}]\n', "line 1: not valid JSON"),
    "label that is not a string": ("d.jsonl", b'{"text": "a", "label": ["World"]}\n',
                                   "line 1: empty or missing label"),
    "text that is an object": ("d.jsonl", b'{"text": {"$gt": ""}, "label": "World"}\n',
                               "line 1: empty or missing text"),
    "line over the line cap": ("d.csv", b"text,label\n" + b"y" * 300_000 + b",World\n",
                               "line 2: longer than 256 KiB"),
    "not a dataset file type": ("d.exe", GOOD_ROWS, "expected a .jsonl or .csv file"),
    "JSONL line nested 10,000 deep": (
        "d.jsonl", GOOD_ROWS + b'{"text": "a", "label": ' + DEEP.encode() + b"}\n",
        "line 3: the row nests arrays and objects more than 32 levels deep"),
    "JSONL line holding a 5,000-digit integer": (
        "d.jsonl", b'{"text": "a", "label": "World", "id": ' + BIG_INT.encode() + b"}\n",
        "line 1: the row holds an integer of more than 4300 digits"),
    "JSONL text holding a lone surrogate": (
        "d.jsonl", GOOD_ROWS + b'{"text": "caf\\udce9", "label": "World"}\n',
        "line 3: text holds a lone surrogate (\\udce9)"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_refuses_a_bad_dataset_on_every_endpoint(endpoint, case, owner, stranger, maintainer,
                                                    expert, media_root):
    filename, content, fragment = DATASET_CASES[case]
    users = {"owner": owner, "stranger": stranger, "maintainer": maintainer}
    client, url, fields, file_field = _endpoint(endpoint, users, expert)
    response = client.post(url, {**fields, file_field: SimpleUploadedFile(filename, content)},
                           format="multipart")
    message = _refusal(response, 400, fragment)
    assert response.json()["error"]["code"] == "invalid_dataset"
    assert message.startswith(f"{filename}: ")
    _nothing_left(media_root)


@pytest.mark.parametrize("filename", ["../../../evil.jsonl", "..\\..\\evil.jsonl",
                                      "/etc/cron.d/evil.jsonl", "ev\x00il.jsonl"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_stores_datasets_under_safe_names_whatever_the_upload_name(
        endpoint, filename, owner, stranger, maintainer, expert, jailed_media):
    jail, media = jailed_media
    users = {"owner": owner, "stranger": stranger, "maintainer": maintainer}
    client, url, fields, file_field = _endpoint(endpoint, users, expert)
    body = multipart(fields, {file_field: (filename, GOOD_ROWS)})
    response = client.generic("POST", url, body, content_type=CONTENT_TYPE)
    stored = _stored_names_are_safe(jail, media)
    if response.status_code == 201:
        assert len(stored) == 1
        assert re.fullmatch(r"(datasets/news/train|training-data/\d+/|request-datasets/)"
                            r"-?[0-9a-f]{32}\.jsonl", stored[0]), stored
    else:
        assert 400 <= response.status_code < 500, response.content[:300]
        assert response.json()["error"]["message"]
        assert stored == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_refuses_one_enormous_line_quickly_without_holding_it(endpoint, owner, stranger,
                                                                maintainer, expert,
                                                                media_root):
    """50 MB of 'x' and no newline, streamed: refused naming line 1, in bounded memory."""
    size = 50 * MiB
    piece = b"x" * MiB
    users = {"owner": owner, "stranger": stranger, "maintainer": maintainer}
    client, url, fields, file_field = _endpoint(endpoint, users, expert)
    pieces, length = streamed_file_body(fields, file_field, "big.jsonl",
                                        (piece for _ in range(size // MiB)), size)
    auth = client._credentials["HTTP_AUTHORIZATION"]
    tracemalloc.start()
    started = time.monotonic()
    try:
        response = client.request(**{
            "REQUEST_METHOD": "POST", "PATH_INFO": url, "CONTENT_TYPE": CONTENT_TYPE,
            "CONTENT_LENGTH": str(length), "wsgi.input": StreamedInput(pieces),
            "HTTP_AUTHORIZATION": auth,
        })
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _refusal(response, 400, "big.jsonl: line 1: longer than 256 KiB")
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while refusing a 50 MiB line"
    assert elapsed < 30, f"took {elapsed:.1f}s"
    _nothing_left(media_root)
