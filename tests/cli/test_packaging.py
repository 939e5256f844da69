"""What `pip install .` ships: pinned dependencies that agree with requirements*.txt, and a wheel
whose modules import only each other (plus the dependencies), never the platform's Django code."""
from __future__ import annotations

import ast
import re
import tomllib

from tests.helpers import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(*files: str) -> dict[str, str]:
    pins = {}
    for name in files:
        for line in (REPO / name).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def _split(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    assert version, f"{requirement} is not pinned"
    return name.lower(), version


def test_it_pins_what_the_project_environment_pins():
    pins = _pins("requirements.txt", "requirements-dev.txt")
    project = PROJECT["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["train"]:
        name, version = _split(requirement)
        assert pins.get(name) == version, f"{requirement}: requirements*.txt pin {pins.get(name)}"
    base = {_split(r)[0] for r in project["dependencies"]}
    assert not base & {"django", "celery", "psycopg2-binary", "torch", "transformers"}
    assert PROJECT["project"]["scripts"]["moecollab"] == "moecollab_cli.cli:main"


def _packaged_modules() -> dict[str, object]:
    setup = PROJECT["tool"]["setuptools"]
    files = {}
    for package in setup["packages"]:
        for path in sorted((REPO / package.replace(".", "/")).glob("*.py")):
            files[f"{package}.{path.stem}".removesuffix(".__init__")] = path
    for module in setup["py-modules"]:
        files[module] = REPO / (module.replace(".", "/") + ".py")
    return files


def test_it_ships_modules_that_import_only_what_ships():
    files = _packaged_modules()
    ours = ("experts", "gating", "training", "moecollab_cli", "moecollab_site")
    missing = []
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in ours and not any(
                        name == m or name.startswith(m + ".") or m.startswith(name + ".")
                        or m == name.rsplit(".", 1)[0] for m in files):
                    missing.append(f"{module} imports {name}")
    assert missing == []
    assert "experts.ml.upload_checks" in files and "moecollab_cli.cli" in files
