"""The `modelyard` command. Exit codes (DESIGN.md): 0 ok · 1 a mandatory policy violation · 2 bad config,
bad input files or usage.

Every expected failure (bad config, unreadable files, bad arguments) prints one clear message to
stderr and exits 2; a traceback is never the answer to a user's mistake.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Only the standard library and the policy pack's conventions (standard-library only) at import time:
# `modelyard --help` must not wait for pydantic, Pulumi or the AWS SDKs.
from modelyard.policies.governance.conventions import DNS_LABEL, PLATFORM_CONFIG_KEY, PROJECT_KEYS

STACK_NAME = re.compile(DNS_LABEL)
FULL_KEY = PLATFORM_CONFIG_KEY

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2
#: Ctrl-C, as shells report a process ended by SIGINT.
EXIT_INTERRUPTED = 130
#: Commands that read a whole preview and judge it: a tree of fresh objects with no cycles, which the
#: cyclic collector would only walk again and again (half their time at 100,000 resources).
UNCOLLECTED = frozenset({"cost", "policy", "diff"})


class UsageError(Exception):
    """A wrong argument or an unusable file; the message says which and what is allowed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own usage errors: exit 2 with the usage line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _project_root(cwd: str | None) -> Path:
    """The checkout to read stack files from: the one the command runs in (or --cwd), as the Pulumi CLI
    does, never the one this package happens to be installed from."""
    from modelyard.programs import find_root

    start = Path(cwd) if cwd else Path.cwd()
    if cwd and not start.is_dir():
        raise UsageError(f"--cwd {cwd}: no such directory")
    try:
        return find_root(start)
    except LookupError as exc:
        raise UsageError(str(exc)) from None


def _use_checkout(cwd: str | None) -> None:
    """Prices and usage assumptions are read from the checkout the command runs in (or --cwd), like its
    stack files and policy configurations; outside any checkout, from the installed package."""
    from modelyard.policies.governance.sources import use_checkout
    from modelyard.programs import find_root

    start = Path(cwd) if cwd else Path.cwd()
    try:
        use_checkout(find_root(start) if start.is_dir() else None)
    except LookupError:
        use_checkout(None)


def _projects_for(choice: str) -> list[str]:
    from modelyard.programs import PROJECTS

    return list(PROJECTS) if choice == "all" else [choice]


def cmd_plan(args: argparse.Namespace) -> int:
    # Imported here so `modelyard --help` stays instant.
    from modelyard.plan import digest as digest_mod
    from modelyard.plan.engine import PlanError, run_program
    from modelyard.plan.report import config_lines, summary, workloads_lines, write_manifests
    from modelyard.programs import PROJECTS
    from modelyard.stackfile import read_stack_config
    from modelyard.verdicts import unit_cost_text

    env: str = args.env
    if not STACK_NAME.match(env):
        raise UsageError(f"ENV {env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    names = _projects_for(args.project)
    if args.config_file and len(names) > 1:
        raise UsageError("--config-file names one stack file: use it with --project platform or --project workloads")

    root = _project_root(args.cwd)

    def load(key: str) -> tuple[Any, Any, dict[str, Any], Path]:
        project = PROJECTS[key]
        path = Path(args.config_file) if args.config_file and key in names else project.stack_file(env, root)
        if not (args.config_file and key in names) and not path.exists():
            available = sorted(p.name.split(".")[1] for p in project.directory_in(root).glob("Pulumi.*.yaml"))
            raise UsageError(
                f"no stack file for {env!r} in project {project.pulumi_name}: {path} does not exist "
                f"(stacks: {', '.join(available) or 'none'})"
            )
        raw = read_stack_config(path, stack=env, key=project.config_key)
        return project, project.parse_config(raw, env, path.name, project.directory_in(root)), raw, path

    plans, descriptions, seconds, unit_costs = [], {}, 0.0, ""
    try:
        # The workloads stack reads the platform stack's outputs: plan the platform first, always.
        platform, platform_cfg, platform_raw, _ = load("platform")
        platform_plan = run_program(platform, env, platform_cfg, platform_raw, region=platform_cfg.region)
        if "platform" in names:
            plans.append(platform_plan)
            descriptions[platform.pulumi_name] = config_lines(platform_cfg)
            seconds += platform_plan.seconds
        if "workloads" in names:
            project, w, raw, path = load("workloads")
            _check_pools(w, platform_plan.outputs, env, path.name)
            outputs = {w.config.platform_stack: platform_plan.outputs}
            plan = run_program(project, env, w, raw, region=platform_cfg.region, stack_outputs=outputs)
            plans.append(plan)
            descriptions[project.pulumi_name] = workloads_lines(w)
            seconds += plan.seconds
            unit_costs = unit_cost_text(w.catalog.models, platform_plan.outputs.get("gpuPools"), platform_cfg.region)
    except PlanError as exc:
        print(f"modelyard plan: {exc}", file=sys.stderr)
        return EXIT_USAGE

    digest = digest_mod.build_digest(plans, env=env)
    print(summary(digest, descriptions, seconds=seconds), end="")
    code = _verdicts(digest, env, args.policy_config, root, unit_costs)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(digest_mod.dumps(digest), encoding="utf-8")
        print(f"PreviewDigest written to {out}")
    if args.manifests:
        count = write_manifests(digest, Path(args.manifests))
        print(f"{count} Kubernetes manifests written under {args.manifests}/")
    return code


def _check_pools(w: Any, outputs: dict[str, Any], env: str, source: str) -> None:
    """Every GPU pool the catalog names exists in the platform plan, and every pool can hold its models' pods (under
    `pulumi up` the program checks the same against the StackReference)."""
    from modelyard.validation import ConfigError
    from modelyard.workloads.catalog import placement_problems

    problems = placement_problems(w.catalog, outputs.get("gpuPools"), env, outputs.get("cpuPool"))
    if problems:
        raise ConfigError(env, w.catalog_path.name, problems)


def _resources(digest: Any) -> Any:
    from modelyard.policies.governance.resources import Stack, from_preview

    return Stack(from_preview(digest))


def _config_dir(root: Path | None = None) -> Path:
    """Where policy configurations are read from: the checkout the command runs in (a fork's own
    `policies/config/`), or the installed package's when the command runs outside any checkout."""
    from modelyard.policies.governance.policy import CONFIG_DIR
    from modelyard.programs import find_root

    if root is None:
        try:
            root = find_root(Path.cwd())
        except LookupError:
            return CONFIG_DIR
    own = root / "policies" / "config"
    return own if own.is_dir() else CONFIG_DIR


def _policy_config(env: str, path: str | None, root: Path | None = None) -> tuple[Any, str]:
    from modelyard.policies.governance.policy import PolicyConfigError, load_config

    config_path = Path(path) if path else _config_dir(root) / f"{env}.json"
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


def _verdicts(digest: Any, env: str, policy_config: str | None, root: Path | None = None, unit_costs: str = "") -> int:
    """The cost (with `unit_costs`, the cost per unit of work, below it) and policy sections of `plan`; 1 when
    a mandatory rule is violated."""
    from modelyard.policies.governance.cost import estimate
    from modelyard.policies.governance.policy import evaluate
    from modelyard.verdicts import cost_text, policy_text

    stack = _resources(digest)
    print()
    print(cost_text(estimate(stack)), end="")
    if unit_costs:
        print()
        print(unit_costs, end="")
    config, source = _policy_config(env, policy_config, root)
    report = evaluate(stack.resources, env, config, stack)
    print()
    print(policy_text(report, source), end="")
    return EXIT_VIOLATION if report.mandatory else EXIT_OK


def _load_preview(path: str, verdict: str | None = None, *, old_states: bool = True) -> Any:
    """The preview file, read as Pulumi means it (modelyard.plan.preview); with `verdict`, only a
    preview that holds the whole stack and did not fail."""
    from modelyard.plan.preview import PreviewError, read

    try:
        preview = read(Path(path), old_states=old_states)
        if verdict:
            preview.require_whole(verdict)
    except PreviewError as exc:
        raise UsageError(str(exc)) from None
    return preview


def cmd_policy(args: argparse.Namespace) -> int:
    import json

    from modelyard.policies.governance.policy import evaluate
    from modelyard.verdicts import policy_text

    if not STACK_NAME.match(args.env):
        raise UsageError(f"--env {args.env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    preview = _load_preview(args.preview, "policy verdict", old_states=False)
    stack = _resources(preview.document)
    config, source = _policy_config(args.env, args.config)
    report = evaluate(stack.resources, args.env, config, stack)
    if args.json:
        print(json.dumps({"config": source, **report.to_json()}, indent=2, default=str))
    else:
        print(policy_text(report, source), end="")
    return EXIT_VIOLATION if report.mandatory else EXIT_OK


def cmd_cost(args: argparse.Namespace) -> int:
    import json

    import yaml
    from pydantic import ValidationError

    from modelyard.policies.governance.cost import Usage, estimate
    from modelyard.validation import ConfigError, read_yaml
    from modelyard.verdicts import cost_text

    preview = _load_preview(args.preview, "cost estimate", old_states=False)
    stack = _resources(preview.document)
    prices = None
    if args.prices:
        from modelyard.policies.governance.prices import price_book

        try:
            prices = price_book(Path(args.prices))
        except FileNotFoundError:
            raise UsageError(f"--prices {args.prices}: no such file") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"{args.prices}: not valid YAML ({exc})") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise UsageError(f"{args.prices}: not a price table: {problems}") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    usage = None
    if args.usage:
        try:
            usage = Usage.model_validate(read_yaml(Path(args.usage), stack="-", missing="no such file"))
        except ConfigError as exc:
            raise UsageError(f"{args.usage}: not a usage file: {'; '.join(exc.problems)}") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise UsageError(f"{args.usage}: not a usage file: {problems}") from None
    est = estimate(stack, usage, region=preview.region, prices=prices)
    if args.json:
        print(json.dumps(est.to_json(), indent=2))
    else:
        print(cost_text(est), end="")
    return EXIT_OK


SERVING_DIR = Path("workloads") / "serving"
SERVING_PYTHON = Path(".venv-serving") / "bin" / "python"
#: The model server's batching and limit flags `modelyard serve` passes through: (flag, type, help).
SERVER_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("workers", int, "front processes (default: the CPUs this machine lets it use)"),
    ("max-batch-size", int, "texts per forward pass (default: the server's for the device it finds)"),
    ("max-batch-tokens", int, "padded tokens per forward pass (default: the server's for the device)"),
    ("model-instances", int, "forward passes at once (default: 1 on a GPU, one per CPU on a CPU)"),
    ("max-wait-ms", float, "how long an idle model waits for company (default 2)"),
    (
        "max-queue",
        int,
        "texts waiting before requests get 503 (default: workers x max(max-inputs, 2 x max-batch-size))",
    ),
    ("max-inputs", int, "texts per request (default 64)"),
    ("max-chars", int, "characters per text (default 8192)"),
    ("read-timeout", float, "seconds a request may take to arrive, from the connection's opening (default 30)"),
    ("max-connections", int, "open connections per front process (default 1024)"),
)


def cmd_serve(args: argparse.Namespace) -> int:
    """The model server, locally, on the bundled model: runs in its own environment (.venv-serving),
    which `make serve` builds, because kserve needs protobuf 6 and this environment has protobuf 5."""
    from modelyard.programs import REPO_ROOT

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port (1-65535)")
    python = REPO_ROOT / SERVING_PYTHON
    if not python.exists():
        raise UsageError(
            f"the model server's environment is missing ({SERVING_PYTHON}): run `make serve`, which builds it "
            "from workloads/serving/requirements.txt"
        )
    argv = [str(python), "-m", "modelyard_server", "--http_port", str(args.port), "--model_name", args.model]
    argv += ["--host", args.host]
    if args.model_dir:
        argv += ["--model_dir", args.model_dir]
    for flag, _, _ in SERVER_FLAGS:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            argv += [f"--{flag.replace('-', '_')}", str(value)]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"serving {args.model} on http://{shown}:{args.port}; try:\n"
        f"  curl -s {shown}:{args.port}/v1/embeddings -H 'content-type: application/json' "
        f'-d \'{{"model": "{args.model}", "input": "hello"}}\'',
        flush=True,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / SERVING_DIR)}
    os.execve(argv[0], argv, env)
    return EXIT_OK  # not reached: execve replaces this process


def cmd_model_push(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from modelyard.infra.model_store import model_bucket_name, model_push_role_name, signing_key_alias
    from modelyard.model_push import PushError, build_reference, push
    from modelyard.programs import PROJECTS
    from modelyard.stackfile import read_stack_config

    if not STACK_NAME.match(args.env):
        raise UsageError(f"--env {args.env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    if args.reference_texts is not None:
        try:
            print(build_reference(Path(args.directory), Path(args.reference_texts)))
        except PushError as exc:
            raise UsageError(str(exc)) from None
    region = args.region
    if region is None:
        stack_file = PROJECTS["platform"].stack_file(args.env, _project_root(args.cwd))
        if stack_file.exists():
            region = read_stack_config(stack_file, stack=args.env).get(FULL_KEY, {}).get("region")
    try:
        session = boto3.session.Session(region_name=region)
        sts = session.client("sts")
        caller = sts.get_caller_identity()
        account, partition = caller["Account"], caller["Arn"].split(":")[1]
        bucket = args.bucket or model_bucket_name(args.env, account)
        # The bucket policy refuses writes from anyone but the push role: assume it.
        role_arn = args.role_arn or f"arn:{partition}:iam::{account}:role/{model_push_role_name(args.env)}"
        try:
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="modelyard-model-push")["Credentials"]
        except ClientError as exc:
            raise UsageError(
                f"cannot assume the push role {role_arn} ({exc.response.get('Error', {}).get('Code', exc)}): is the "
                f"{args.env} platform stack up, and are you one of model_store.pusher_role_arns?"
            ) from None
        pusher = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )
        print(f"as {role_arn}, the model bucket's one writer")
        push(
            pusher.client("s3"),
            Path(args.directory),
            bucket=bucket,
            model=args.model,
            version=args.version,
            kms=pusher.client("kms"),
            signing_key=signing_key_alias(args.env),
        )
    except PushError as exc:
        raise UsageError(str(exc)) from None
    except NoCredentialsError:
        raise UsageError(
            "no AWS credentials: configure a profile or role (aws sts get-caller-identity must work)"
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise UsageError(f"AWS refused: {exc} (running the same push again resumes it)") from None
    return EXIT_OK


#: loadtest's options for an LLM, with their defaults (refused for an embedding model when changed).
LLM_DEFAULTS = {"max_tokens": 256, "prompt_words": 200}


def cmd_loadtest(args: argparse.Namespace) -> int:
    from modelyard import loadtest as lt
    from modelyard.policies.governance.gpus import GPU_CLASSES
    from modelyard.programs import PROJECTS
    from modelyard.stackfile import read_stack_config
    from modelyard.workloads.catalog import load_workloads

    if not STACK_NAME.match(args.env):
        raise UsageError(f"--env {args.env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    root = _project_root(args.cwd)
    stack_file = PROJECTS["workloads"].stack_file(args.env, root)
    if not stack_file.exists():
        raise UsageError(f"no workloads stack file for {args.env!r}: {stack_file} does not exist")
    w = load_workloads(stack_file, stack=args.env)
    by_name = {m.name: m for m in w.catalog.models}
    model = by_name.get(args.model)
    if model is None:
        raise UsageError(f"MODEL {args.model!r} is not in the {args.env} catalog (models: {', '.join(by_name)})")
    if model.runtime.kind == "modelyard":
        return _loadtest_embeddings(args, model)
    if model.runtime.kind != "vllm" or model.resources.gpu is None:
        raise UsageError(
            f"MODEL {args.model!r} runs the {model.runtime.kind} runtime; loadtest drives vllm models (OpenAI chat "
            "completions, streamed) and modelyard models (OpenAI embeddings)"
        )
    if args.texts is not None:
        raise UsageError(f"--texts is for an embedding model; {args.model!r} is an LLM (a request is one prompt)")
    engine = model.runtime.engine  # type: ignore[union-attr]
    try:
        target = lt.Target.parse(args.url)
    except lt.LoadTestError as exc:
        raise UsageError(str(exc)) from None
    headers = _loadtest_arguments(args)
    for flag, value, low, high in (
        ("--max-tokens", args.max_tokens, 1, engine.max_model_len),
        ("--prompt-words", args.prompt_words, 1, engine.max_model_len),
    ):
        if value is not None and not low <= value <= high:
            raise UsageError(f"{flag} {value}: must be from {low} to {high}")
    if args.prompt_words + args.max_tokens > engine.max_model_len:
        raise UsageError(
            f"--prompt-words {args.prompt_words} + --max-tokens {args.max_tokens}: must fit the entry's "
            f"max_model_len ({engine.max_model_len})"
        )
    rate, basis = args.rate, "given"
    if rate is None and model.load is not None:
        rate, basis = model.load.requests_per_second, "the catalog entry's load.requests_per_second"
    if rate is None:
        raw = read_stack_config(PROJECTS["platform"].stack_file(args.env, root), stack=args.env).get(FULL_KEY, {})
        gpu_class = next(
            (p.get("gpu_class") for p in raw.get("gpu_pools", []) if p.get("name") == model.resources.gpu.pool), None
        )
        if gpu_class not in GPU_CLASSES:
            raise UsageError(
                f"pool {model.resources.gpu.pool!r} has no known GPU class in the {args.env} stack: pass --rate"
            )
        throughput = model.runtime_module.throughput(model, GPU_CLASSES[gpu_class])
        assert throughput is not None
        rate = lt.DEFAULT_LOAD * model.replicas.min * throughput.per_second / args.max_tokens
        basis = (
            f"{lt.DEFAULT_LOAD:.0%} of what the plan assumes {model.replicas.min} replica(s) serve: "
            f"{throughput.per_second:,.0f} tokens/s each on {gpu_class} / {args.max_tokens} tokens an answer"
        )
    _check_rate(rate)
    slo = model.slo
    objectives = lt.Objectives(slo.availability, slo.ttft_ms, slo.itl_ms, slo.latency_percentile / 100)  # type: ignore[arg-type]
    times = _announce(args, model.name, target.url, rate, basis, f"{args.prompt_words}-word prompt, "
                      f"{args.max_tokens} tokens at most")  # fmt: skip
    body = lt.request_body(model.name, args.prompt_words, args.max_tokens)
    samples = lt.run(target, body, times, timeout=engine.request_timeout_s, headers=headers)
    verdict = lt.judge(samples, objectives, args.duration)
    lt.report(verdict, objectives)
    return _loadtest_done(args, samples, verdict.ok)


def _loadtest_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The checks every load test makes of its own arguments; the headers it sends (a bearer token, if set)."""
    if not 1 <= args.duration <= 86_400:
        raise UsageError(f"--duration {args.duration}: must be from 1 to 86400")
    if args.samples and not Path(args.samples).resolve().parent.is_dir():
        raise UsageError(f"--samples {args.samples}: its directory does not exist")
    return {"Authorization": f"Bearer {key}"} if (key := os.environ.get(args.api_key_env)) else {}


def _check_rate(rate: float) -> None:
    if not 0 < rate <= 10_000:
        raise UsageError(f"--rate {rate:g}: must be above 0 and at most 10000 requests a second")


def _announce(args: argparse.Namespace, model: str, url: str, rate: float, basis: str, requests: str) -> list[float]:
    """The run's schedule, said before it starts."""
    from modelyard import loadtest as lt

    times = lt.schedule(rate, args.duration, args.arrivals, args.seed)
    print(f"modelyard loadtest {model} ({args.env}) → {url}")
    print(
        f"  open loop: {len(times)} requests, {args.arrivals} arrivals at {rate:.2f}/s for {args.duration:g} s "
        f"({basis}); {requests}"
    )
    return times


def _loadtest_done(args: argparse.Namespace, samples: Any, ok: bool) -> int:
    from modelyard import loadtest as lt

    if args.samples:
        lt.write_samples(samples, args.samples)
        print(f"{len(samples)} samples written to {args.samples}")
    return EXIT_OK if ok else EXIT_VIOLATION


#: Seconds an embeddings request may take before it counts as failed.
EMBEDDINGS_TIMEOUT_S = 30.0


def _loadtest_embeddings(args: argparse.Namespace, model: Any) -> int:
    """`modelyard loadtest` of an embedding model (the modelyard runtime): OpenAI embeddings at the entry's load."""
    from modelyard import loadtest as lt

    try:
        target = lt.Target.parse(args.url, lt.EMBEDDINGS_PATH)
    except lt.LoadTestError as exc:
        raise UsageError(str(exc)) from None
    for flag in ("max_tokens", "prompt_words"):
        if getattr(args, flag) != LLM_DEFAULTS[flag]:
            raise UsageError(f"--{flag.replace('_', '-')} is for an LLM; {model.name!r} is an embedding model")
    headers = _loadtest_arguments(args)
    load = model.load
    rate, basis = args.rate, "given"
    if rate is None:
        if load is None:
            raise UsageError(
                f"MODEL {model.name!r} has no load in the {args.env} catalog: pass --rate, or give the entry "
                "load: {requests_per_second: ..., texts_per_request: ...}"
            )
        rate, basis = load.requests_per_second, "the catalog entry's load.requests_per_second"
    _check_rate(rate)
    most = model.runtime_module.max_texts_per_request
    texts = args.texts if args.texts is not None else (load.texts_per_request if load is not None else 1)
    if not 1 <= texts <= most:
        raise UsageError(f"--texts {texts}: must be from 1 to {most}, the texts the server takes in one request")
    objectives = lt.LatencyObjectives(model.slo.availability, model.slo.p99_latency_ms, 0.99)
    times = _announce(args, model.name, target.url, rate, basis, f"{texts} texts a request, none repeated")
    bodies = lt.embeddings_bodies(model.name, len(times), texts, seed=args.seed)
    samples = lt.run(target, bodies, times, timeout=EMBEDDINGS_TIMEOUT_S, headers=headers)
    verdict = lt.judge_latency(samples, objectives, args.duration)
    lt.report_latency(verdict, objectives)
    return _loadtest_done(args, samples, verdict.ok)


def _diff_policy(env: str, policy_config: str | None, notes: list[str]) -> Any:
    """The policy configuration for `env`, or None with a note saying why policy is not evaluated."""
    where = _config_dir()
    if policy_config or (env and (where / f"{env}.json").exists()):
        return _policy_config(env, policy_config)[0]
    notes.append(
        f"Policy not evaluated: no policy configuration for stack {env!r} "
        f"({_shown(where)}/{env or '<stack>'}.json); pass --policy-config."
    )
    return None


def _diff_report(base: str, head: str, policy_config: str | None) -> Any:
    """Two whole documents (base and head), read in parallel where the platform can fork."""
    from modelyard.review import compare_previews

    notes: list[str] = []
    verdict = "comparison of two previews"
    report = compare_previews(  # each document as it will be: what a stack has now is not compared
        lambda: _load_preview(base, verdict, old_states=False),
        lambda: _load_preview(head, verdict, old_states=False),
        lambda env: _diff_policy(env, policy_config, notes),
    )
    report.notes += notes
    return report


def cmd_diff(args: argparse.Namespace) -> int:
    import json

    from modelyard.review import engine_report, markdown, to_json

    if args.head is None:
        # One real preview: the engine's own operations and diffs.
        preview = _load_preview(args.base)
        whole = not preview.errors and preview.omitted_sames == 0
        notes: list[str] = []
        config = _diff_policy(preview.env, args.policy_config, notes) if whole else None
        report = engine_report(preview.document, config, whole=whole, env=preview.env, region=preview.region)
        report.notes += notes
        report.errors = list(preview.errors)
    else:
        report = _diff_report(args.base, args.head, args.policy_config)
    if args.json:
        print(json.dumps(to_json(report), indent=2, sort_keys=True))
    else:
        print(markdown(report), end="")
    # A failed preview is reported, and the command fails: its steps are partial.
    return EXIT_USAGE if report.errors else EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    """Plan the working tree and a base git ref (in a temporary worktree) for each environment, and print
    the review report of each."""
    import subprocess
    import tempfile

    from modelyard.review import markdown

    REPO_ROOT = _project_root(args.cwd)  # the checkout under review: where the command runs
    from modelyard.programs import stack_envs

    envs = args.env or stack_envs(REPO_ROOT)
    with tempfile.TemporaryDirectory(prefix="modelyard-review-") as tmp:
        base_tree = Path(tmp) / "base"
        added = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(base_tree), args.base],
            capture_output=True,
            text=True,
            check=False,
        )
        if added.returncode != 0:
            raise UsageError(f"cannot check out --base {args.base!r}: {added.stderr.strip()}")
        try:
            for env in envs:
                docs: list[str] = []
                for tree in (base_tree, REPO_ROOT):
                    out = Path(tmp) / f"{env}-{'base' if tree == base_tree else 'head'}.json"
                    run = subprocess.run(
                        [sys.executable, "-m", "modelyard.cli", "plan", env, "--project", "all", "--out", str(out)],
                        cwd=tree,
                        env={**os.environ, "PYTHONPATH": str(tree)},
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if run.returncode == EXIT_USAGE or not out.exists():
                        raise UsageError(f"planning {env} at {tree.name}: {run.stderr.strip() or run.stdout[-500:]}")
                    docs.append(str(out))
                print(markdown(_diff_report(docs[0], docs[1], None)))
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
    return EXIT_OK


def cmd_ops(args: argparse.Namespace) -> int:
    import json

    from modelyard import ops

    try:
        prom = ops.Prometheus(args.prometheus)
        if args.ops_command == "slo":
            result = ops.slo(prom, args.model)
        elif args.ops_command == "gpu":
            result = ops.gpu(prom)
        elif args.ops_command == "canary":
            result = ops.canary(prom, args.model, args.window)
        elif args.ops_command == "drift":
            result = ops.drift(prom, args.model)
        elif args.ops_command == "shadow":
            result = ops.shadow(prom, args.model)
        elif args.ops_command == "alerts":
            result = ops.alerts(prom)
        elif args.ops_command == "gateway":
            result = ops.gateway(prom, args.window)
        else:
            result = _ops_cost(prom, args.env)
    except ops.OpsError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        # JSON has no NaN or Infinity (a ratio over no traffic): they are written as null.
        print(json.dumps(_finite(result.to_json()), indent=2, sort_keys=True, allow_nan=False))
    else:
        print(ops.render(result))
    return EXIT_VIOLATION if result.problem else EXIT_OK


def cmd_canary(args: argparse.Namespace) -> int:
    """`modelyard canary decide`: each running canary's verdict, and with --apply the one-line catalog edit it asks
    for (modelyard/promotion.py)."""
    import json

    from modelyard import ops, promotion
    from modelyard.programs import PROJECTS
    from modelyard.validation import ConfigError
    from modelyard.workloads.catalog import load_workloads

    if not STACK_NAME.match(args.env):
        raise UsageError(f"--env {args.env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    stack_file = PROJECTS["workloads"].stack_file(args.env, _project_root(args.cwd))
    if not stack_file.exists():
        raise UsageError(f"--env {args.env}: no workloads stack file {stack_file}")
    try:
        w = load_workloads(stack_file, stack=args.env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    running = [m.name for m in w.catalog.models if m.canary_active]
    if args.model is not None and args.model not in running:
        raise UsageError(
            f"--model {args.model!r} has no running canary in the {args.env} catalog "
            f"(models with one: {', '.join(running) or 'none'})"
        )
    chosen = [args.model] if args.model else running
    try:
        prom = ops.Prometheus(args.prometheus)
        verdicts = {name: ops.canary(prom, name, args.window) for name in chosen}
    except ops.OpsError as exc:
        raise UsageError(str(exc)) from None
    decisions = promotion.decide(w.catalog, verdicts)
    applied = []
    for d in decisions:
        if args.apply and d.path is not None:
            try:
                promotion.apply(w.catalog_path, d, stack=args.env, tier=w.config.tier)
            except promotion.EditError as exc:
                raise UsageError(str(exc)) from None
            applied.append(d.model)
    if args.json:
        out = {
            "env": args.env,
            "catalog": str(w.catalog_path.relative_to(_project_root(args.cwd))),
            "window": args.window,
        }
        out["decisions"] = [{**d.to_json(), "applied": d.model in applied} for d in decisions]
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        for d in decisions:
            action = d.change or "no change"
            done = " (written)" if d.model in applied else ""
            print(f"{d.model}: {d.verdict}: {action}{done}\n  {d.title}")
        if not decisions:
            print(f"no running canary in the {args.env} catalog")
    return EXIT_OK


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, at any depth."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _ops_cost(prom: Any, env: str) -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from modelyard import ops

    if not STACK_NAME.match(env):
        raise UsageError(f"--env {env!r} is not a stack name: use a lowercase name such as dev, staging or prod")
    try:
        session = boto3.session.Session()
        account = session.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
        return ops.cost(prom, session.client("budgets", region_name="us-east-1"), account, env)
    except NoCredentialsError:
        raise ops.OpsError(
            "no AWS credentials: configure a profile or role (aws sts get-caller-identity must work)"
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise ops.OpsError(f"AWS refused: {exc}") from None


def _add_preview(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "preview", metavar="PREVIEW.json", help="a PreviewDigest: modelyard plan --out, or pulumi preview --json"
    )


def _prometheus_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prometheus",
        default=os.environ.get("MODELYARD_PROMETHEUS_URL", "http://127.0.0.1:9090"),
        help="Prometheus URL (default: $MODELYARD_PROMETHEUS_URL or http://127.0.0.1:9090, a port-forward)",
    )


def prometheus_duration(value: str) -> str:
    """A PromQL range such as 30m (argparse type): refused here, naming it, rather than by Prometheus."""
    import re

    if not re.fullmatch(r"[1-9]\d*(ms|s|m|h|d|w|y)", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Prometheus duration such as 5m, 30m or 1h")
    return value


def build_parser() -> argparse.ArgumentParser:
    from modelyard import __version__

    parser = _Parser(prog="modelyard", description="Plan, review and operate the modelyard platform.")
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    parser.add_argument(
        "-C",
        "--cwd",
        metavar="DIR",
        help="run as if started in DIR: stack files and catalogs are read from the checkout DIR is in",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

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
        choices=[*PROJECT_KEYS, "all"],
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
    _add_preview(policy)
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
    _add_preview(cost)
    cost.add_argument("--prices", metavar="F", help="price table (default: policies/governance/prices.yaml)")
    cost.add_argument("--usage", metavar="F", help="usage assumptions (default: policies/governance/usage.yaml)")
    cost.add_argument("--json", action="store_true", help="print JSON instead of text")
    cost.set_defaults(handler=cmd_cost)

    serve = sub.add_parser(
        "serve",
        help="the model server, locally, on the bundled all-MiniLM-L6-v2 (runs until stopped)",
        description="Run the model server (workloads/serving) in its own environment: KServe v1, Open "
        "Inference Protocol v2 and OpenAI /v1/embeddings. Ctrl-C or SIGTERM drains and exits.",
    )
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default: 8080)")
    serve.add_argument("--model", default="minilm", help="the model name clients use (default: minilm)")
    serve.add_argument("--model-dir", help="a sentence-transformers model directory (default: the bundled model)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 opens it to the network)"
    )
    for flag, kind, text in SERVER_FLAGS:
        serve.add_argument(f"--{flag}", type=kind, default=None, help=text)
    serve.set_defaults(handler=cmd_serve)

    diff = sub.add_parser(
        "diff",
        help="PR review report between two PreviewDigests: changes, cost delta, policy delta",
        description="Compare BASE and HEAD (offline plans or pulumi preview --json): resources created, "
        "updated (with the changed properties), replaced and deleted, by layer; stateful replacements and "
        "deletions first; the monthly cost delta; new and fixed policy violations. Markdown by default.",
    )
    diff.add_argument("base", metavar="BASE.json", help="the base digest; alone, a real preview to report on")
    diff.add_argument(
        "head",
        metavar="HEAD.json",
        nargs="?",
        help="the head digest (omit it to read BASE.json's own old and new states)",
    )
    form = diff.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="Markdown for a PR comment (the default)")
    form.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    diff.add_argument("--policy-config", metavar="F", help="policy configuration (default: policies/config/<ENV>.json)")
    diff.set_defaults(handler=cmd_diff)

    review = sub.add_parser(
        "review",
        help="plan the working tree and a base git ref for each environment and print the review report",
    )
    review.add_argument("--base", default="HEAD", help="the git ref to compare with (default: HEAD)")
    review.add_argument(
        "--env", action="append", help="an environment (repeatable; default: every Pulumi.<env>.yaml of the checkout)"
    )
    review.set_defaults(handler=cmd_review)

    ops_cmd = sub.add_parser(
        "ops",
        help="runbook tooling against Prometheus and AWS (exit 1: a problem found; 2: unreachable or bad usage)",
        description="What the runbooks would otherwise have you type. Tables by default, --json for scripts.",
    )
    _prometheus_option(ops_cmd)
    ops_cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ops_sub = ops_cmd.add_subparsers(dest="ops_command", required=True, parser_class=_Parser, metavar="ACTION")
    slo = ops_sub.add_parser("slo", help="burn rates over the alert windows and error budget left, per model")
    slo.add_argument("--model", help="one model (default: every model with an SLO)")
    ops_sub.add_parser("gpu", help="provisioned vs allocated vs used GPUs by pool; idle GPUs and their cost a day")
    cost_ops = ops_sub.add_parser("cost", help="month-to-date spend and forecast against the budget, and live GPU cost")
    cost_ops.add_argument("--env", required=True, help="the environment (its AWS Budget is modelyard-<env>)")
    canary_ops = ops_sub.add_parser("canary", help="canary vs stable error ratio and p99, with a verdict")
    canary_ops.add_argument("model", metavar="MODEL")
    canary_ops.add_argument(
        "--window", type=prometheus_duration, default="30m", help="how far back to compare (default: 30m)"
    )
    drift_ops = ops_sub.add_parser(
        "drift", help="the drift worker's latest tests of a model's input and output, with the alerts' verdict"
    )
    drift_ops.add_argument("model", metavar="MODEL")
    shadow_ops = ops_sub.add_parser(
        "shadow", help="a shadow's answers against the stable version's, beyond its own noise: same, differs or hold"
    )
    shadow_ops.add_argument("model", metavar="MODEL")
    ops_sub.add_parser("alerts", help="what is firing or pending, with the runbook of each")
    gateway_ops = ops_sub.add_parser(
        "gateway", help="each model route at the gateway: requests, errors, retries, breaker, ejected replicas"
    )
    gateway_ops.add_argument("--window", type=prometheus_duration, default="5m", help="the rate window (default: 5m)")
    ops_cmd.set_defaults(handler=cmd_ops)

    load = sub.add_parser(
        "loadtest",
        help="open-loop load test of a catalogued model, with a verdict (exit 1: an objective missed)",
        description="Send requests to URL on a schedule fixed in advance (latency counted from each request's "
        "scheduled send time) and judge them against MODEL's objectives in the ENV catalog: an LLM (vllm) "
        "streams OpenAI chat completions (time to first token, inter-token latency, errors); an embedding model "
        "(modelyard) gets OpenAI embeddings calls (p99 latency, errors).",
    )
    load.add_argument("model", metavar="MODEL", help="the catalog name of a vllm or modelyard model")
    load.add_argument("--env", required=True, help="the environment whose catalog entry sets the objectives")
    load.add_argument(
        "--url", required=True, help="the model's OpenAI endpoint, e.g. http://127.0.0.1:8080 (a port-forward)"
    )
    load.add_argument(
        "--rate",
        type=float,
        help="requests a second (default: the entry's load.requests_per_second; for an LLM without one, 80%% of "
        "what the plan assumes the minimum replicas serve)",
    )
    load.add_argument(
        "--texts", type=int, help="an embedding model's texts a request (default: the entry's load.texts_per_request)"
    )
    load.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals (default: 60)")
    load.add_argument("--arrivals", choices=["constant", "poisson"], default="poisson", help="default: poisson")
    load.add_argument("--seed", type=int, default=0, help="seed of the Poisson schedule (default: 0)")
    load.add_argument(
        "--max-tokens",
        type=int,
        default=LLM_DEFAULTS["max_tokens"],
        help=f"an LLM's tokens each answer may have (default: {LLM_DEFAULTS['max_tokens']})",
    )
    load.add_argument(
        "--prompt-words",
        type=int,
        default=LLM_DEFAULTS["prompt_words"],
        help=f"words in an LLM's prompt (default: {LLM_DEFAULTS['prompt_words']})",
    )
    load.add_argument(
        "--api-key-env",
        default="MODELYARD_API_KEY",
        help="environment variable holding a bearer token to send (default: MODELYARD_API_KEY; none if unset)",
    )
    load.add_argument("--samples", metavar="F", help="write one JSON line per request to F")
    load.set_defaults(handler=cmd_loadtest)

    canary_cmd = sub.add_parser(
        "canary",
        help="running canaries' verdicts as the one-line catalog edits that act on them (promote or roll back)",
    )
    canary_sub = canary_cmd.add_subparsers(dest="canary_command", required=True, parser_class=_Parser, metavar="ACTION")
    decide = canary_sub.add_parser(
        "decide",
        help="each running canary's verdict (modelyard ops canary); with --apply, the catalog edit it asks for",
        description="promote: the model's version becomes the canary's; rollback: the canary's traffic_percent "
        "becomes 0; hold: nothing. The edit changes one line and keeps the rest of the file.",
    )
    decide.add_argument("--env", required=True, help="the environment whose catalog and Prometheus to read")
    decide.add_argument("--model", help="one model (default: every model with a running canary)")
    decide.add_argument(
        "--window", type=prometheus_duration, default="30m", help="how far back to compare (default: 30m)"
    )
    decide.add_argument("--apply", action="store_true", help="write the edits into the catalog file")
    decide.add_argument("--json", action="store_true", help="print JSON instead of lines")
    _prometheus_option(decide)
    decide.set_defaults(handler=cmd_canary)

    model = sub.add_parser("model", help="model artifacts in the environment's model store")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=_Parser, metavar="ACTION")
    push_cmd = model_sub.add_parser(
        "push",
        help="upload a model directory to s3://<bucket>/<model>/<version>/ with a manifest, never overwriting",
        description="Upload DIR to the environment's model bucket as MODEL/VERSION, with manifest.json "
        "(files, sizes, sha256) written last. Files from 64 MiB go up in SHA-256-checked parts; a push that "
        "stopped resumes when run again. Refuses a complete version; verifies every file after upload.",
    )
    push_cmd.add_argument("directory", metavar="DIR", help="the model directory (e.g. a sentence-transformers model)")
    push_cmd.add_argument("--env", required=True, help="the environment (its model bucket is the target)")
    push_cmd.add_argument("--model", required=True, help="the model's catalog name")
    push_cmd.add_argument("--version", required=True, help="the version to create (immutable once pushed)")
    push_cmd.add_argument("--bucket", help="the bucket (default: modelyard-<env>-models-<account>)")
    push_cmd.add_argument("--region", help="AWS region (default: the platform stack file's region)")
    push_cmd.add_argument(
        "--role-arn", help="the role to push as (default: the environment's push role, modelyard-<env>-model-push)"
    )
    push_cmd.add_argument(
        "--reference-texts",
        metavar="FILE",
        help="texts (one a line, 200 to 20,000) the version is meant for: encoded by the model into DIR's "
        "drift_reference.npz before the upload, what the drift worker compares live traffic with",
    )
    push_cmd.set_defaults(handler=cmd_model_push)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    # A terminal that cannot show a character (a non-UTF-8 locale) gets an escape, not a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    return build_parser().parse_args(argv)


def _run(args: argparse.Namespace) -> int:
    import contextlib

    from modelyard.plan.preview import uncollected
    from modelyard.validation import ConfigError

    try:
        _use_checkout(getattr(args, "cwd", None))
        with uncollected() if args.command in UNCOLLECTED else contextlib.nullcontext():
            code: int = args.handler(args)
    except KeyboardInterrupt:
        print(f"modelyard {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"modelyard {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # Network errors are OSErrors too, without an errno or a file: say what they say.
        detail = exc.strerror or str(exc) or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        print(f"modelyard {args.command}: {detail}{where}", file=sys.stderr)
        return EXIT_USAGE
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return _run(_parse(argv))


def run() -> None:
    """The console script. A command that judged a whole preview leaves without freeing it one object at a
    time (half a second at 100,000 resources): its output is flushed, and it has nothing else to close."""
    args = _parse(None)
    code = _run(args)
    if args.command in UNCOLLECTED:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:  # a reader that stopped early (`| head`): what it read is all it wanted
            pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
