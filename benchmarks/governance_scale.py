"""Policy and cost on a 10,000-resource preview: time to load, evaluate every rule, and estimate.

Target: policy and cost together under 5 s on the 2-core build machine. The preview is the
offline plan of prod with its resources repeated under distinct URNs (each copy keeps its own
dependencies, so the joins of stack rules do real work), written to disk and read back as a user's
`pulumi preview --json` file would be.

    python benchmarks/governance_scale.py [--resources 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from modelyard.config import FULL_KEY
from modelyard.plan.digest import build_digest
from modelyard.plan.engine import run_program
from modelyard.plan.preview import read
from modelyard.policies.governance import cost, policy
from modelyard.policies.governance.resources import Stack, from_preview
from modelyard.programs import PROJECTS, REPO_ROOT
from modelyard.stackfile import parse_platform_config


def prod_digest() -> dict[str, Any]:
    raw = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]
    cfg = parse_platform_config(raw[FULL_KEY], stack="prod", source="Pulumi.prod.yaml")
    return build_digest([run_program(PROJECTS["platform"], "prod", cfg, raw, region=cfg.region)], env="prod")


def replicate(digest: dict[str, Any], target: int) -> dict[str, Any]:
    steps = digest["steps"]
    copies = -(-target // len(steps))
    text = json.dumps(steps)
    out: list[dict[str, Any]] = []
    for i in range(copies):
        # Rename every logical name in this copy (URNs end in ::<name>), keeping references consistent.
        renamed = text.replace("::", f"::c{i}-").replace(f"urn:pulumi:prod::c{i}-", "urn:pulumi:prod::")
        # ... and its GPU pools, so the pods pinned to a pool stay with their own copy of it.
        for pool in ("a10g", "l40s"):
            renamed = renamed.replace(f'"{pool}"', f'"{pool}-c{i}"')
        out += json.loads(renamed)
    return {"steps": out}  # whole copies only: a cut copy would lose its provider or companions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    args = parser.parse_args()
    doc = replicate(prod_digest(), args.resources)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "preview.json"
        path.write_text(json.dumps(doc))
        size = path.stat().st_size
        t0 = time.perf_counter()
        stack = Stack(from_preview(read(path).document))
        t1 = time.perf_counter()
        report = policy.evaluate(stack.resources, "prod", policy.load_config("prod"), stack)
        t2 = time.perf_counter()
        est = cost.estimate(stack)
        t3 = time.perf_counter()
    print(f"preview: {len(stack.resources)} resources, {size / 1e6:.1f} MB")
    print(f"load + validate:  {t1 - t0:6.2f} s")
    print(f"policy ({report.rules_run} rules): {t2 - t1:6.2f} s  ({len(report.violations)} violations)")
    print(f"cost:             {t3 - t2:6.2f} s  (baseline ${est.baseline:,.0f}, ceiling ${est.ceiling:,.0f})")
    total = t3 - t1
    print(f"policy + cost:    {total:6.2f} s  (target < 5 s: {'met' if total < 5 else 'MISSED'})")


if __name__ == "__main__":
    main()
