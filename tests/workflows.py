"""The repository's GitHub workflows, read as GitHub reads them (tests/test_workflows.py, tests/test_ci.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelyard.programs import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return dict(doc)
