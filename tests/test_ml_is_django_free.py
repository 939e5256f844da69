"""The ML core (layer 1) imports nothing from Django, so it runs in any Python process."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

ML_PACKAGES = ["experts/ml", "gating/ml", "training/ml"]


def ml_modules() -> list[str]:
    names = []
    for package in ML_PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            names.append(str(path.relative_to(REPO).with_suffix("")).replace("/", "."))
    return names


def test_it_finds_the_ml_modules():
    assert "experts.ml.backbone" in ml_modules()
    assert "gating.ml.router" in ml_modules()


def test_it_imports_every_ml_module_without_loading_django():
    code = (
        "import importlib, sys\n"
        f"for name in {ml_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print('LEAKED', leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_it_keeps_the_ml_core_a_dag():
    """experts/ml < gating/ml < training/ml: no layer imports the one above it."""
    above = {"experts/ml": ("gating", "training"), "gating/ml": ("training",)}
    upward = []
    for package, forbidden in above.items():
        for path in sorted((REPO / package).glob("*.py")):
            for name in sorted(_imports(path)):
                if name.split(".")[0] in forbidden:
                    upward.append(f"{path.relative_to(REPO)} imports {name}")
    assert upward == []
    # the check sees imports inside functions as well
    assert "gating.ml.moe" in _imports(REPO / "gating" / "ml" / "training.py")
