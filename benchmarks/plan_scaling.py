"""Offline-plan scaling: plan prod with 1x, 10x and 50x its GPU pools and print seconds per resource.

Target: prod plans in under 10 s on the 2-core build machine, and time grows linearly with
the number of resources, i.e. seconds per resource stays roughly flat from 1x to 50x.

    python benchmarks/plan_scaling.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys

import yaml

from modelyard.config import FULL_KEY
from modelyard.plan.engine import run_program
from modelyard.programs import PROJECTS
from modelyard.stackfile import parse_platform_config

FACTORS = (1, 10, 50)


def scaled(raw: dict, factor: int) -> dict:  # type: ignore[type-arg]
    """prod's config with its GPU pools repeated `factor` times under distinct names."""
    raw = copy.deepcopy(raw)
    pools = raw[FULL_KEY]["gpu_pools"]
    raw[FULL_KEY]["gpu_pools"] = [{**pool, "name": f"{pool['name']}-{i}"} for i in range(factor) for pool in pools]
    return raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per factor; the median is reported")
    args = parser.parse_args()
    project = PROJECTS["platform"]
    base = yaml.safe_load(project.stack_file("prod").read_text())["config"]

    # Warm-up: imports and first-call costs are paid once, outside the measurements.
    cfg = parse_platform_config(base[FULL_KEY], stack="prod", source="Pulumi.prod.yaml")
    run_program(project, "prod", cfg, base, region=cfg.region)

    print(f"{'pools':>6} {'resources':>10} {'seconds':>9} {'ms/resource':>12}")
    rows = []
    for factor in FACTORS:
        raw = scaled(base, factor)
        cfg = parse_platform_config(raw[FULL_KEY], stack="prod", source="scaled")
        times, count = [], 0
        for _ in range(args.repeat):
            plan = run_program(project, "prod", cfg, raw, region=cfg.region)
            times.append(plan.seconds)
            count = len(plan.registrations)
        seconds = statistics.median(times)
        rows.append((len(cfg.gpu_pools), count, seconds))
        print(f"{len(cfg.gpu_pools):>6} {count:>10} {seconds:>9.2f} {1000 * seconds / count:>12.2f}")

    first, last = rows[0], rows[-1]
    ratio = (last[2] / last[1]) / (first[2] / first[1])
    print(f"per-resource time at {FACTORS[-1]}x vs 1x: {ratio:.2f}x (1.0 = perfectly linear)")
    print(f"prod (1x) planned in {first[2]:.2f} s (target < 10 s): {'ok' if first[2] < 10 else 'TOO SLOW'}")
    return 0 if first[2] < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
