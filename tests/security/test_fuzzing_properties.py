"""Property-based fuzzing (hypothesis) of everything the web process parses from a user: any
manifest, safetensors header, dataset line or JSON request body is accepted or refused with a
4xx in the error shape, never a 5xx, and a refusal leaves no row and no file.

tests/security/test_upload_fuzzing.py and test_hostile_bodies.py pin the cases found so far;
these draw new ones. Values are drawn as JSON text, so they include what json.dumps cannot
write but an attacker can: 5,000-digit integers, 1e999, NaN, lone surrogates, deep nesting.
The budget is fixed and the runs derandomized: the same examples every run, in about 20 s.
"""
from __future__ import annotations

import json
import re
import struct
from typing import Any

from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experts.datasets import DatasetError, parse_dataset
from experts.ml.safetensors_header import HeaderError, parse_safetensors_header
from experts.models import DataSplit, Domain, Expert, ExpertRequest, ExpertVersion, ReviewComment
from experts.uploads import UploadRejected, check_upload
from gating.models import GatingVersion
from gating.serving import reset as serving_reset
from tests.helpers import NEWS_LABELS, api_client_for, media_files
from tests.security.test_hostile_bodies import JSON_ENDPOINTS, _path
from training.models import Job


def _fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


# JSON text -----------------------------------------------------------------------------------

# Characters of every category, lone surrogates included (json.dumps escapes them as \udXXX).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
HOSTILE_TOKENS = st.sampled_from([  # the first ones come up most often
    "[" * 5000 + "]" * 5000, '"a \\udfff b"', "7" * 5000, "1e999", "NaN",
    '{"a":' * 40 + "0" + "}" * 40, '"\\ud800"', '{"\\udc00": 1}', "-" + "9" * 4301,
    "1" + "0" * 400, "-1e999", "Infinity", "[" * 40 + "]" * 40, "[]", "{}", '""', "0", "-1",
])
PLAIN = st.one_of(st.none(), st.booleans(), st.integers(),
                  st.floats(allow_nan=False, allow_infinity=False), TEXT).map(json.dumps)
JSON_TEXT = st.recursive(
    st.one_of(HOSTILE_TOKENS, PLAIN),  # hostile first: hypothesis favours the first branch
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(TEXT.map(json.dumps), kids), max_size=4).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}")),
    max_leaves=8)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (keys and list indices), the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _replaced(document: Any, path: tuple, raw: str, *, drop: bool = False) -> str:
    """`document` as JSON text with the value at `path` replaced by the JSON text `raw` (or the
    key removed)."""
    if not path:
        return raw
    doc = json.loads(json.dumps(document))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
        return json.dumps(doc)
    parent[path[-1]] = "@RAW@"
    return json.dumps(doc).replace('"@RAW@"', raw, 1)


def _edits(document: Any) -> st.SearchStrategy[str]:
    """JSON text of `document` with one value replaced, one key dropped or one key added."""
    paths = _paths(document)
    replace = st.builds(lambda p, raw: _replaced(document, p, raw), st.sampled_from(paths),
                        JSON_TEXT)
    drop = st.builds(lambda p: _replaced(document, p, "null", drop=True),
                     st.sampled_from([p for p in paths if p]))
    add = st.builds(lambda k, raw: _replaced(document, (), json.dumps(document)[:-1]
                                             + f", {json.dumps(k)}: {raw}}}"), TEXT, JSON_TEXT)
    return st.one_of(replace, replace, drop, add)


def _bytes_edits(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with a slice replaced by random bytes, or cut short."""
    splice = st.builds(lambda at, n, new: data[:at] + new + data[at + n:],
                       st.integers(0, len(data)), st.integers(0, 16), st.binary(max_size=16))
    return st.one_of(splice, st.integers(0, len(data)).map(lambda n: data[:n]))


# Artifacts -----------------------------------------------------------------------------------

def _split(weights: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", weights[:8])
    return json.loads(weights[8:8 + n]), weights[8 + n:]


def _with_header(text: str, data: bytes) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + data


def _artifacts(artifact) -> st.SearchStrategy[tuple[bytes, bytes]]:
    """(manifest, weights) with the manifest, the header or the bytes of either edited."""
    manifest, weights = artifact
    header, data = _split(weights)
    return st.one_of(
        _edits(json.loads(manifest)).map(lambda m: (m.encode("utf-8", "surrogatepass"),
                                                    weights)),
        _edits(header).map(lambda h: (manifest, _with_header(h, data))),
        _bytes_edits(manifest).map(lambda m: (m, weights)),
        _bytes_edits(weights[:200]).map(lambda w: (manifest, w + weights[200:])),
    )


def _upload_files(manifest: bytes, weights: bytes) -> dict:
    return {"manifest": SimpleUploadedFile("manifest.json", manifest),
            "weights": SimpleUploadedFile("weights.safetensors", weights)}


def test_it_checks_any_artifact_without_an_unexpected_exception(artifact):
    """The web process's checks raise UploadRejected, naming a check, or accept: nothing else."""

    @_fuzz(400)
    @given(_artifacts(artifact))
    def check(pair):
        try:
            check_upload(*_upload_files(*pair).values(), max_bytes=2**20)
        except UploadRejected as exc:
            assert exc.check and exc.message

    check()


def test_it_parses_any_safetensors_header_without_an_unexpected_exception(artifact):
    header, data = _split(artifact[1])

    @_fuzz(300)
    @given(_edits(header))
    def parse(text):
        try:
            parse_safetensors_header(_with_header(text, data))
        except HeaderError as exc:
            assert str(exc)

    parse()


def _nothing_left(media_root, before: int) -> None:
    assert ExpertVersion.objects.count() == before
    assert Job.objects.filter(kind=Job.Kind.VALIDATE_EXPERT).count() == before
    assert len(media_files(media_root)) == 2 * before


def test_it_answers_any_upload_with_201_or_a_4xx_leaving_nothing(owner, expert, artifact,
                                                                 media_root):
    client = api_client_for(owner)
    url = f"/api/v1/experts/{expert.pk}/versions/"

    @_fuzz(60)
    @given(_artifacts(artifact))
    def upload(pair):
        kept = ExpertVersion.objects.count()
        response = client.post(url, _upload_files(*pair), format="multipart")
        assert response.status_code < 500, response.content[:300]
        if response.status_code == 201:  # an edit the checks have no reason to refuse
            version = ExpertVersion.objects.get(pk=response.json()["id"])
            for field in (version.manifest_file, version.weights):
                field.storage.delete(field.name)
            Job.objects.filter(pk=version.training_params["validation_job"]).delete()
            version.delete()
        else:
            assert response.json()["error"]["message"]
        _nothing_left(media_root, kept)

    upload()


# Datasets ------------------------------------------------------------------------------------

GOOD_ROW = {"text": "Stocks fell", "label": "Business"}
LINES = st.one_of(_edits(GOOD_ROW), JSON_TEXT, st.just(json.dumps(GOOD_ROW)))
DATASETS = st.lists(LINES, min_size=1, max_size=4).map(
    lambda lines: ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))


def test_it_parses_any_dataset_line_without_an_unexpected_exception():
    @_fuzz(400)
    @given(DATASETS)
    def parse(content):
        try:
            parsed = parse_dataset([content], filename="d.jsonl", labels=NEWS_LABELS,
                                   max_rows=100)
        except DatasetError as exc:
            message = str(exc)  # every bad line named, in one message
            assert re.match(r"(line \d+: |\d+ lines have problems)", message) or (
                "holds no rows" in message), message
            return
        assert parsed.to_jsonl() and parsed.sha256  # what is kept can be stored and hashed

    parse()


def test_it_answers_any_dataset_upload_with_201_or_a_400_leaving_nothing(maintainer, news,
                                                                         media_root):
    client = api_client_for(maintainer)

    @_fuzz(40)
    @given(DATASETS)
    def upload(content):
        response = client.post("/api/v1/domains/news/splits/",
                               {"kind": "train", "file": SimpleUploadedFile("d.jsonl", content)},
                               format="multipart")
        assert response.status_code in (201, 400), response.content[:300]
        if response.status_code == 201:
            for split in DataSplit.objects.all():
                split.file.storage.delete(split.file.name)
                split.delete()
        else:
            assert response.json()["error"]["code"] == "invalid_dataset"
        assert DataSplit.objects.count() == 0 and media_files(media_root) == []

    upload()


# Request bodies ------------------------------------------------------------------------------

def _rows() -> tuple:
    return tuple(model.objects.count() for model in (Domain, Expert, ExpertRequest, Job,
                                                     GatingVersion, ReviewComment))


# A body each JSON endpoint accepts, so that edits of it get past the first field check.
GOOD_BODIES = {
    "api/v1/predict/": {"texts": ["Stocks fell", "A late goal"]},
    "api/v1/auth/token/": {"username": "maya", "password": "pw-maya"},
    "api/v1/experts/": {"domain": "news", "name": "fresh", "description": "d"},
    "api/v1/gating/": {"expert_version_ids": [1, 2], "params": {"epochs": 1}},
    "api/v1/domains/": {"name": "legal", "labels": ["a", "b"], "description": "d"},
    "api/v1/experts/<int:pk>/": {"description": "mine", "license": "MIT"},
    "api/v1/experts/<int:pk>/versions/<int:number>/review/": {"action": "comment",
                                                              "comment": "ok"},
    "api/v1/requests/": {"title": "Want spam", "description": "d", "domain": "news"},
    "api/v1/jobs/": {"kind": "self_check", "params": {}},
}
assert {pattern for _, pattern in JSON_ENDPOINTS} == set(GOOD_BODIES)
REQUESTS = st.sampled_from(JSON_ENDPOINTS).flatmap(lambda endpoint: st.tuples(
    st.just(endpoint), st.one_of(_edits(GOOD_BODIES[endpoint[1]]), JSON_TEXT,
                                 st.text(max_size=40))))


def test_it_answers_any_json_body_without_a_5xx(world):
    serving_reset()  # nothing in production: predict's 503 says so, in the error shape
    client = api_client_for(world["maintainer"])

    @_fuzz(300)
    @given(REQUESTS)
    def send(request):
        cache.clear()  # throttles would answer 429 before the body is read
        (method, pattern), body = request
        before = _rows()
        response = client.generic(method.upper(), _path(pattern, world),
                                  body.encode("utf-8", "surrogatepass"),
                                  content_type="application/json")
        error = response.json().get("error") if response.status_code >= 400 else None
        if response.status_code == 503:
            assert pattern == "api/v1/predict/" and error["code"] == "no_production_model"
        else:
            assert response.status_code < 500, response.content[:300]
        if error is not None:
            assert error["code"] and error["message"]
            assert _rows() == before, f"{method} {pattern} refused ({response.status_code}) " \
                                      "but changed rows"

    send()
    serving_reset()
