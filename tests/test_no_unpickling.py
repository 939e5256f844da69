"""No project code can unpickle: uploads are safetensors + JSON, read by safe parsers only."""
from __future__ import annotations

import re

from tests.helpers import REPO

FORBIDDEN = re.compile(
    r"(?<![\w.])torch\.load\s*\(|pickle\.loads?\s*\(|cPickle|joblib\.load\s*\(|dill\.loads?\s*\("
    r"|allow_pickle\s*=\s*True|shelve\.open\s*\(|marshal\.loads?\s*\(|import\s+pickle"
)
SKIP = {".venv", "var", "tests", ".git", "node_modules"}


def project_sources():
    for path in REPO.rglob("*.py"):
        if SKIP.isdisjoint(path.relative_to(REPO).parts):
            yield path


def test_it_scans_the_project_code():
    names = {p.relative_to(REPO).as_posix() for p in project_sources()}
    assert "experts/ml/artifact.py" in names and "experts/services.py" in names


def test_it_finds_no_unpickling_anywhere_in_project_code():
    hits = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
            for path in project_sources()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if FORBIDDEN.search(line)]
    assert hits == []


def test_the_pattern_catches_what_it_must():
    for bad in ["torch.load(f)", "pickle.loads(b)", "joblib.load('x')",
                "np.load(p, allow_pickle=True)", "import pickle"]:
        assert FORBIDDEN.search(bad), bad
    assert not FORBIDDEN.search("safetensors.torch.load(data)")
