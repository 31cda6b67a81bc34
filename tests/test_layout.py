"""The layout's own rules: the repo's `platform/` folder never shadows the standard library's `platform`
module, and test modules share helpers through conftest and support modules, never through each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.programs import REPO_ROOT

CHECK = (
    "import sys, platform, uuid; "
    "assert platform.__file__.startswith(sys.base_prefix) or 'python3' in platform.__file__, platform.__file__; "
    "platform.system(); uuid.uuid4(); "
    "import modelyard.platform.common as n, modelyard.infra.network; "
    "assert n.__file__.endswith('platform/common.py'), n.__file__; print('ok')"
)


@pytest.mark.parametrize(
    "cwd", [REPO_ROOT, REPO_ROOT / "platform", "/"], ids=["repo-root", "platform-dir", "elsewhere"]
)
def test_stdlib_platform_wins_with_the_repo_on_sys_path(cwd: object) -> None:
    # `python -c` puts the current directory first on sys.path, as Pulumi and `python -m` do for the repo root.
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=str(cwd), capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_platform_folder_has_no_init() -> None:
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_no_test_module_imports_another() -> None:
    """Helpers live in conftest.py and the support modules (support.py, crd_schema.py, iam_docs.py, iam_lint.py): a test
    module imported by another runs its tests' module code twice and hides where a helper lives."""
    found = []
    for tests in (REPO_ROOT / "tests", REPO_ROOT / "workloads" / "serving" / "tests"):
        for path in sorted(tests.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                found += [f"{path.name}: {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert not found, found


def test_every_python_package_folder_is_packaged() -> None:
    """A non-editable install (`pip install .`) ships only the packages pyproject lists: each folder of the
    mapped layers with an __init__.py must be one of them."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {folder: package for package, folder in tool["package-dir"].items()}
    found = set()
    for folder, package in mapped.items():
        for init in (root / folder).rglob("__init__.py"):
            if "serving" in init.relative_to(root).parts or ".venv" in str(init):
                continue
            rel = init.parent.relative_to(root / folder).parts
            found.add(".".join((package, *rel)))
    assert found <= set(tool["packages"]), sorted(found - set(tool["packages"]))
