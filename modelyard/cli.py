"""The `modelyard` command. Exit codes (DESIGN.md): 0 ok · 1 a mandatory policy violation (once the policy
commands land) · 2 bad config or usage.

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

EXIT_OK, EXIT_USAGE = 0, 2


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
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(digest_mod.dumps(digest), encoding="utf-8")
        print(f"PreviewDigest written to {out}")
    if args.manifests:
        count = write_manifests(digest, Path(args.manifests))
        print(f"{count} Kubernetes manifests written under {args.manifests}/")
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
    plan.set_defaults(handler=cmd_plan)
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
