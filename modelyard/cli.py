"""The `modelyard` command. Exit codes (DESIGN.md): 0 ok · 1 a mandatory policy violation · 2 bad config,
bad input files or usage.

Every expected failure (bad config, unreadable files, bad arguments) prints one clear message to
stderr and exits 2; a traceback is never the answer to a user's mistake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.config import FULL_KEY, STACK_NAME, ConfigError, read_stack_config

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A wrong argument or an unusable file; the message says which and what is allowed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors: exit 2 with the usage line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _projects_for(choice: str) -> list[str]:
    from modelyard.programs import PROJECTS

    return list(PROJECTS) if choice == "all" else [choice]


def cmd_plan(args: argparse.Namespace) -> int:
    # Imported here so `modelyard --help` stays instant.
    from modelyard.plan import digest as digest_mod
    from modelyard.plan.engine import PlanError, run_program
    from modelyard.plan.report import summary, write_manifests
    from modelyard.programs import PROJECTS

    env: str = args.env
    if not STACK_NAME.match(env):
        raise UsageError(f"ENV {env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    names = _projects_for(args.project)

    plans, configs, seconds = [], {}, 0.0
    for key in names:
        project = PROJECTS[key]
        path = Path(args.config_file) if args.config_file else project.stack_file(env)
        if args.config_file is None and not path.exists():
            available = sorted(p.name.split(".")[1] for p in project.directory.glob("Pulumi.*.yaml"))
            raise UsageError(
                f"no stack file for {env!r} in project {project.pulumi_name}: {path} does not exist "
                f"(stacks: {', '.join(available) or 'none'})"
            )
        raw = read_stack_config(path, stack=env)
        cfg = project.parse_config(raw, env, path.name)
        try:
            plan = run_program(project, env, cfg, raw, region=cfg.region)
        except PlanError as exc:
            print(f"modelyard plan: {exc}", file=sys.stderr)
            return EXIT_USAGE
        plans.append(plan)
        configs[project.pulumi_name] = cfg
        seconds += plan.seconds

    digest = digest_mod.build_digest(plans, env=env)
    print(summary(digest, configs, seconds=seconds), end="")
    code = _verdicts(digest, env, args.policy_config)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(digest_mod.dumps(digest), encoding="utf-8")
        print(f"PreviewDigest written to {out}")
    if args.manifests:
        count = write_manifests(digest, Path(args.manifests))
        print(f"{count} Kubernetes manifests written under {args.manifests}/")
    return code


def _resources(digest: Any) -> Any:
    from modelyard.policies.governance.resources import Stack, from_preview

    return Stack(from_preview(digest))


def _policy_config(env: str, path: str | None) -> tuple[Any, str]:
    from modelyard.policies.governance.policy import CONFIG_DIR, PolicyConfigError, load_config

    config_path = Path(path) if path else CONFIG_DIR / f"{env}.json"
    try:
        return load_config(env, config_path), _shown(config_path)
    except PolicyConfigError as exc:
        raise UsageError(str(exc)) from None


def _shown(path: Path) -> str:
    from modelyard.programs import REPO_ROOT

    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _verdicts(digest: Any, env: str, policy_config: str | None) -> int:
    """The cost and policy sections of `plan`; 1 when a mandatory rule is violated."""
    from modelyard.policies.governance.cost import estimate
    from modelyard.policies.governance.policy import evaluate
    from modelyard.verdicts import cost_text, policy_text

    stack = _resources(digest)
    print()
    print(cost_text(estimate(stack)), end="")
    config, source = _policy_config(env, policy_config)
    report = evaluate(stack.resources, env, config, stack)
    print()
    print(policy_text(report, source), end="")
    return EXIT_VIOLATION if report.mandatory else EXIT_OK


def _load_preview(path: str) -> Any:
    from modelyard.plan import digest as digest_mod

    try:
        return digest_mod.load(Path(path))
    except digest_mod.DigestError as exc:
        raise UsageError(str(exc)) from None


def cmd_policy(args: argparse.Namespace) -> int:
    import json

    from modelyard.policies.governance.policy import evaluate
    from modelyard.verdicts import policy_text

    if not STACK_NAME.match(args.env):
        raise UsageError(f"--env {args.env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    stack = _resources(_load_preview(args.preview))
    config, source = _policy_config(args.env, args.config)
    report = evaluate(stack.resources, args.env, config, stack)
    if args.json:
        print(json.dumps({"config": source, **report.to_json()}, indent=2, default=str))
    else:
        print(policy_text(report, source), end="")
    return EXIT_VIOLATION if report.mandatory else EXIT_OK


def cmd_cost(args: argparse.Namespace) -> int:
    import json

    from pydantic import ValidationError

    from modelyard.policies.governance.cost import estimate, load_usage
    from modelyard.verdicts import cost_text

    stack = _resources(_load_preview(args.preview))
    usage = None
    if args.usage:
        try:
            usage = load_usage(Path(args.usage))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise UsageError(f"{args.usage}: not a usage file: {problems}") from None
        except (ValueError, AttributeError) as exc:
            raise UsageError(f"{args.usage}: not a usage file: {exc}") from None
    est = estimate(stack, usage)
    if args.json:
        print(json.dumps(est.to_json(), indent=2))
    else:
        print(cost_text(est), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from modelyard import __version__

    parser = _Parser(prog="modelyard", description="Plan, review and operate the modelyard platform.")
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    from modelyard.programs import PROJECTS

    plan = sub.add_parser(
        "plan",
        help="offline plan of an environment: what would be created, by layer and type",
        description="Run the real Pulumi program of ENV under Pulumi's mocks: no cloud account, no Pulumi CLI, "
        "no network. Prints a summary; --out writes the PreviewDigest JSON (the shape of "
        "`pulumi preview --json`); --manifests writes every Kubernetes object as YAML.",
    )
    plan.add_argument("env", metavar="ENV", help="the stack to plan: dev, staging, prod or any Pulumi.<ENV>.yaml")
    plan.add_argument(
        "--project",
        choices=[*PROJECTS, "all"],
        default="platform",
        help="which Pulumi project(s) to plan (default: platform)",
    )
    plan.add_argument("--config-file", metavar="F", help=f"read {FULL_KEY} from F instead of Pulumi.<ENV>.yaml")
    plan.add_argument("--out", metavar="F", help="write the PreviewDigest JSON to F")
    plan.add_argument("--manifests", metavar="DIR", help="write every Kubernetes object as YAML under DIR")
    plan.add_argument("--policy-config", metavar="F", help="policy configuration (default: policies/config/<ENV>.json)")
    plan.set_defaults(handler=cmd_plan)

    policy = sub.add_parser(
        "policy",
        help="policy verdicts on a PreviewDigest (exit 1 on a mandatory violation)",
        description="Run the governance rules (the same ones the CrossGuard pack in policies/ runs) on an "
        "offline plan or on `pulumi preview --json` output.",
    )
    policy.add_argument(
        "preview", metavar="PREVIEW.json", help="a PreviewDigest: modelyard plan --out, or pulumi preview --json"
    )
    policy.add_argument("--env", required=True, help="the environment whose policy config applies (dev, staging, prod)")
    policy.add_argument("--config", metavar="F", help="policy configuration (default: policies/config/<ENV>.json)")
    policy.add_argument("--json", action="store_true", help="print JSON instead of text")
    policy.set_defaults(handler=cmd_policy)

    cost = sub.add_parser(
        "cost",
        help="monthly cost estimate of a PreviewDigest: baseline and ceiling, by resource and layer",
        description="Price the resources of an offline plan or of `pulumi preview --json` output with "
        "policies/governance/prices.yaml and the usage assumptions in policies/governance/usage.yaml.",
    )
    cost.add_argument(
        "preview", metavar="PREVIEW.json", help="a PreviewDigest: modelyard plan --out, or pulumi preview --json"
    )
    cost.add_argument("--usage", metavar="F", help="usage assumptions (default: policies/governance/usage.yaml)")
    cost.add_argument("--json", action="store_true", help="print JSON instead of text")
    cost.set_defaults(handler=cmd_cost)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"modelyard {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"modelyard {args.command}: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
