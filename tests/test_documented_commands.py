"""Every command the README, docs/ and the runbooks show is run here, or checked against what it names.

- `make T`: a target of the Makefile; `make plan` and the offline `modelyard` commands are run, and what
  the README says `make plan` prints is what it prints.
- `modelyard ...`: parsed by the real parser (placeholders filled in); `plan`, `cost`, `policy` and
  `diff` are run on a real plan; `ops`, `model push` and `serve` are run by their own tests (against a
  real Prometheus, moto and the real server), which this checks exist for each subcommand shown.
- `pulumi`, `docker`, `kubectl`: they need AWS or a cluster; what they name is checked here: the stack,
  project, policy pack and configuration files, the build context and its build arguments, the
  namespaces, containers and labels of the pods the plan creates (as KServe builds them).
- `aws`, `crane`, `curl` and shell assignments are listed in `ELSEWHERE` with where they are proven.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Plan

from modelyard.cli import build_parser
from modelyard.policies.governance import kserve
from modelyard.policies.governance.resources import Stack, from_preview
from modelyard.policies.governance.rules import ISVC, kserve_settings
from modelyard.programs import REPO_ROOT

DOCUMENTS = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    *sorted((REPO_ROOT / "runbooks").glob("*.md")),
    REPO_ROOT / "policies" / "README.md",
    REPO_ROOT / "benchmarks" / "RESULTS.md",
]
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|console|shell)\n(.*?)^```", re.S | re.M)
#: Commands that need what this machine has not, and where what they do is proven instead.
ELSEWHERE = {
    "aws": "AWS itself (docs/verification.md lists what only AWS confirms)",
    "crane": "the mirror list it copies is the plan's (tests/test_conformance.py: the mirror doc test)",
    "curl": "the request it sends is the OpenAI embeddings call workloads/serving/tests/test_protocols.py makes",
    "REG": "a shell assignment",
}
#: The `modelyard` subcommands whose tests run them against real services, by test file.
RUN_BY = {
    "ops": "tests/test_ops.py",
    "model": "tests/test_model_push.py",
    "serve": "tests/test_cli.py",
    "review": "tests/test_review.py",
    "loadtest": "tests/test_loadtest.py",
    "canary": "tests/test_ops.py",
}
#: Placeholders the documents use, and a value to parse them with.
#: Where a shell line's first command ends.
OPERATORS = "|&;()<>"
PLACEHOLDERS = {"MODEL": "minilm", "M": "minilm", "NAME": "minilm", "ENV": "dev", "<env>": "dev", "N": "1", "V": "1"}


def documented() -> Iterator[tuple[str, str]]:
    """(document, command) for each command line of each shell block: comments and prompts stripped,
    continuation lines joined."""
    for path in DOCUMENTS:
        for block in SHELL_BLOCK.findall(path.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip().removeprefix("$ ")
                if command and not command.startswith("#"):
                    yield path.relative_to(REPO_ROOT).as_posix(), command
        if path.parent.name == "runbooks":  # the runbooks also name commands in their prose
            for span in re.findall(r"`(modelyard [^`]+)`", path.read_text()):
                yield path.relative_to(REPO_ROOT).as_posix(), span


COMMANDS = sorted(set(documented()))


def words(command: str) -> list[str]:
    """The first command of a shell line, as the shell splits it (quotes kept whole: `sh -c '... | ...'`
    stays one word), up to its first pipe, list or redirection operator; placeholders filled in."""
    # `<env>` is a placeholder, not two redirections.
    command = re.sub(r"<([A-Za-z][\w-]*)>", lambda m: PLACEHOLDERS.get(m.group(0), m.group(1)), command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=OPERATORS)
    lexer.whitespace_split = True
    argv: list[str] = []
    for word in lexer:
        if set(word) <= set(OPERATORS):
            break
        argv.append(PLACEHOLDERS.get(word, word))
    return argv


def optional_forms(command: str) -> list[str]:
    """`cmd [--json] [--usage U.yaml]` as written with none and with all of its optional parts."""
    bare = re.sub(r"\s*\[[^\]]*\]", "", command)
    full = re.sub(r"\[([^\]]*)\]", r"\1", command)
    return [bare, full] if bare != full else [command]


def by_program(program: str) -> list[tuple[str, str]]:
    return [(doc, c) for doc, c in COMMANDS if c.split()[0].split("=")[0] == program]


def test_every_documented_command_is_covered_here() -> None:
    programs = {c.split()[0].split("=")[0] for _, c in COMMANDS}
    covered = {"make", "modelyard", "pulumi", "docker", "kubectl", *ELSEWHERE}
    assert programs <= covered, f"documented commands nothing checks: {sorted(programs - covered)}"
    assert {"make", "modelyard", "pulumi", "kubectl"} <= programs  # the reader's path is really covered


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize(("doc", "command"), by_program("make"))
def test_every_documented_make_target_exists(doc: str, command: str) -> None:
    target = words(command)[1]
    assert target in makefile_targets(), f"{doc}: `{command}`: no such Makefile target"


def test_make_plan_prints_what_the_readme_says_it_prints(tmp_path: Path) -> None:
    """`make plan` run for real (in a copy of its recipe's arguments, writing under tmp_path), and each line
    the README shows of its output is there, in that order ("..." elides; timings differ)."""
    recipe = re.search(r"^plan:.*\n\t\$\(BIN\)/(modelyard .*)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile's plan target runs modelyard"
    argv = shlex.split(recipe.group(1).replace("out/", f"{tmp_path}/"))[1:]
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *argv], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dev.json").is_file() and any((tmp_path / "manifests" / "dev").iterdir())
    readme = (REPO_ROOT / "README.md").read_text()
    shown = readme.split("`make plan` prints", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    lines = result.stdout.splitlines()
    at = 0
    timing = re.compile(r"planned in [\d.]+ s")
    for line in shown.splitlines():
        if line.strip() == "...":
            continue
        wanted = timing.sub("planned in", line)
        found = next((i for i in range(at, len(lines)) if timing.sub("planned in", lines[i]) == wanted), None)
        assert found is not None, f"README shows a line `make plan` does not print (in this order): {line!r}"
        at = found + 1


@pytest.fixture(scope="module")
def documented_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("documented") / "dev.json"
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "plan", "dev", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return out


#: What each command the docs show gave when it ran (its argv as run): a plan takes seconds.
RAN: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}


@pytest.mark.parametrize(("doc", "command"), by_program("modelyard"))
def test_every_documented_modelyard_command_parses_and_the_offline_ones_run(
    doc: str, command: str, documented_plan: Path
) -> None:
    parser = build_parser()
    for form in optional_forms(command):
        argv = words(form)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"{doc}: `{form}` is not a valid modelyard command (exit {exc.code})")
        if argv[0] in RUN_BY:
            test_file = REPO_ROOT / RUN_BY[argv[0]]
            shown = argv[1] if argv[0] in ("ops", "model", "canary") else argv[0]
            assert f'"{shown}"' in test_file.read_text(), f"{doc}: `{form}`: {RUN_BY[argv[0]]} never runs {shown}"
            continue
        # Run it: files it names are the plan (any preview will do), the rest stays as written.
        files = iter([str(documented_plan)] * 2)
        argv = [next(files) if a.endswith(".json") and not a.startswith("-") else a for a in argv]
        argv = [a for a in argv if not a.endswith(".yaml")] if "--usage" in argv or "--prices" in argv else argv
        argv = [a for a in argv if a not in ("--usage", "--prices")]
        if argv[0] == "plan":
            argv = [a for a in argv if not a.startswith("out/")]
            argv = [a for i, a in enumerate(argv) if not (a in ("--out", "--manifests") and i + 1 == len(argv))]
        key = tuple(argv)
        if key not in RAN:  # the same command documented in several places runs once
            command_line = [sys.executable, "-m", "modelyard.cli", *argv]
            RAN[key] = subprocess.run(command_line, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
        result = RAN[key]
        assert result.returncode in (0, 1), f"{doc}: `{form}` exits {result.returncode}: {result.stderr}"
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("doc", "command"), by_program("pulumi"))
def test_every_documented_pulumi_command_names_what_exists(doc: str, command: str) -> None:
    argv = words(command)
    assert argv[1] in ("login", "stack", "preview", "up", "config", "destroy", "refresh"), f"{doc}: {command}"
    flags = dict(itertools.pairwise(argv))
    project = REPO_ROOT / flags.get("-C", ".")
    assert (project / "Pulumi.yaml").is_file(), f"{doc}: `{command}`: no project in {project}"
    stack = flags.get("-s") or (argv[3] if argv[1:3] == ["stack", "init"] else None)
    if stack:
        assert (project / f"Pulumi.{stack}.yaml").is_file(), f"{doc}: `{command}`: no stack file for {stack}"
    if "--policy-pack" in flags:
        assert (REPO_ROOT / flags["--policy-pack"] / "PulumiPolicy.yaml").is_file(), f"{doc}: no policy pack"
        assert (REPO_ROOT / flags["--policy-pack-config"]).is_file(), f"{doc}: no such policy configuration"


@pytest.mark.parametrize(("doc", "command"), by_program("docker"))
def test_every_documented_docker_command_names_what_exists(doc: str, command: str) -> None:
    argv = words(command)
    if argv[1] != "build":
        return
    context = REPO_ROOT / argv[-1]
    dockerfile = (context / "Dockerfile").read_text()
    for i, a in enumerate(argv):
        if a == "--build-arg":
            name, value = argv[i + 1].split("=", 1)
            assert re.search(rf"^ARG {name}\b", dockerfile, re.M), f"{doc}: the Dockerfile has no ARG {name}"
            if name == "VARIANT":
                assert f'"{value}"' in dockerfile or f"{value})" in dockerfile or f"={value}" in dockerfile


@pytest.fixture(scope="module")
def cluster(all_plans: dict[str, Plan]) -> dict[str, set[str]]:
    """What kubectl would find in prod: namespaces, and the containers and labels of model pods as KServe
    builds them."""
    prod = all_plans["prod"]
    stack = Stack(from_preview(prod.digest))
    namespaces = {r.get("metadata", "name") for r in stack.of_type("kubernetes:core/v1:Namespace")}
    namespaces |= {r.get("namespace") for r in stack.of_type("kubernetes:helm.sh/v3:Release")}
    containers: set[str] = set()
    labels: set[str] = set()
    settings = kserve_settings(stack)
    for isvc in stack.of_type(ISVC):
        pod = kserve.model_pod(isvc.inputs, settings)
        containers |= {c["name"] for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]}
        labels |= set(pod["metadata"]["labels"])
    assert containers and labels
    return {"namespaces": {str(n) for n in namespaces if n}, "containers": containers, "labels": labels}


@pytest.mark.parametrize(("doc", "command"), by_program("kubectl"))
def test_every_documented_kubectl_command_names_what_the_plan_creates(
    doc: str, command: str, cluster: dict[str, set[str]]
) -> None:
    argv = words(command)
    if "--" in argv:  # what follows runs in the container: its own flags are not kubectl's
        argv = argv[: argv.index("--")]
    for i, a in enumerate(argv[:-1]):
        value = argv[i + 1]
        if a == "-n" and value != "NS":
            assert value in cluster["namespaces"], f"{doc}: `{command}`: the plan creates no namespace {value}"
        if a == "-c" and "NS" in argv:  # a model pod's container (NS: the model's namespace)
            assert value in cluster["containers"], f"{doc}: `{command}`: a model pod has no container {value}"
        if a == "-l" and "=" in value and value.split("=")[1] == "minilm":
            key = value.split("=")[0]
            assert key in cluster["labels"], f"{doc}: `{command}`: model pods carry no label {key}"


def test_the_documents_show_commands_at_all() -> None:
    counts = {p: len(by_program(p)) for p in ("make", "modelyard", "pulumi", "kubectl")}
    assert all(counts.values()), counts
