"""Read vLLM's command line and metric names out of a vLLM source release, as data the tests hold us to.

    python tests/conformance/extract_vllm.py vllm-<version>.tar.gz tests/conformance/vllm-v<version>/

Nothing of vLLM is imported or run (it needs CUDA): the source is parsed with `ast`, as `vllm serve`
would build its parser, in three steps.

- `cli.json`: every `--flag` that `EngineArgs.add_cli_args` (vllm/engine/arg_utils.py) and the frontend's
  `FrontendArgs`/`BaseFrontendArgs` (vllm/entrypoints/common/cli_args.py) register, with what argparse will
  accept for it. A flag registered as `add_argument("--x", **<group>_kwargs["field"])` takes the kind that
  `_compute_kwargs` derives from the config dataclass field's annotation (bool: `--x`/`--no-x`; a Literal:
  its choices; int, float, str; a list: one or more values); explicit `type=`, `choices=` and `action=`
  win, as in argparse.
- `metrics.json`: every `name="vllm:..."` metric the Prometheus stat logger (vllm/v1/metrics/loggers.py)
  creates, with its kind (counter series gain `_total`, histograms `_bucket`/`_sum`/`_count`) and label
  names; the default histogram buckets (vllm/v1/metrics/buckets.py); the finish reasons
  (vllm/v1/engine/__init__.py) and admission reasons; the HTTP instrumentator's handlers left out.
- `loaders.json`: the load formats `vllm serve --load-format` maps to a model loader
  (vllm/model_executor/model_loader/__init__.py), the keys the Run:ai streamer's loader takes in
  `--model-loader-extra-config` (runai_streamer_loader.py), the object-storage schemes a model path may
  name (vllm/transformers_utils/runai_utils.py), and whether the vllm-openai image installs the streamer's
  S3 backend (docker/Dockerfile).
- `PROVENANCE.md` is written by hand: the archive's URL and sha256.
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

ENGINE_ARGS = "vllm/engine/arg_utils.py"
FRONTEND_ARGS = "vllm/entrypoints/common/cli_args.py"
LOGGERS = "vllm/v1/metrics/loggers.py"
BUCKETS = "vllm/v1/metrics/buckets.py"
ENGINE = "vllm/v1/engine/__init__.py"
INSTRUMENTATOR = "vllm/entrypoints/serve/instrumentator/metrics.py"
LOADERS = "vllm/model_executor/model_loader/__init__.py"
RUNAI_LOADER = "vllm/model_executor/model_loader/runai_streamer_loader.py"
RUNAI_UTILS = "vllm/transformers_utils/runai_utils.py"
DOCKERFILE = "docker/Dockerfile"


class Source:
    """The archive's Python files, read once into memory."""

    def __init__(self, archive: Path):
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            self.root = names[0].split("/", 1)[0]
            self._texts: dict[str, str] = {}
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith((".py", "Dockerfile")):
                    data = tar.extractfile(member)
                    assert data is not None, member.name
                    self._texts[member.name[len(self.root) + 1 :]] = data.read().decode()
        self._trees: dict[str, ast.Module] = {}
        self._names = {f"{self.root}/{n}" for n in self._texts}

    def text(self, path: str) -> str:
        return self._texts[path]

    def tree(self, path: str) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = ast.parse(self.text(path))
        return self._trees[path]

    def python_files(self, under: str) -> list[str]:
        prefix = f"{self.root}/{under}"
        return sorted(n[len(self.root) + 1 :] for n in self._names if n.startswith(prefix) and n.endswith(".py"))


def _literal_aliases(src: Source) -> dict[str, list[Any]]:
    """`Name = Literal[...]` anywhere under vllm/config and vllm/model_executor/layers/quantization."""
    found: dict[str, list[Any]] = {}
    for path in src.python_files("vllm/config") + src.python_files("vllm/model_executor/layers/quantization"):
        for node in src.tree(path).body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            if isinstance(node, ast.AnnAssign):
                target = node.target
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if isinstance(target, ast.Name) and isinstance(value, ast.Subscript) and _is_literal(value):
                try:
                    found[target.id] = _literal_values(value)
                except ValueError:  # a Literal built from other names: not resolved, read as a string
                    continue
    return found


def _is_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Subscript) and getattr(node.value, "id", getattr(node.value, "attr", "")) == "Literal"


def _literal_values(node: ast.Subscript) -> list[Any]:
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return [ast.literal_eval(i) for i in items]


def _annotation_parts(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_parts(node.left) + _annotation_parts(node.right)
    return [node]


def _kind(annotation: ast.AST, aliases: dict[str, list[Any]]) -> dict[str, Any]:
    """What `_compute_kwargs` makes of a field annotation, in its order of checks."""
    parts = _annotation_parts(annotation)
    names = {getattr(p, "id", None) for p in parts}
    choices: list[Any] = []
    for p in parts:
        if _is_literal(p):
            choices += _literal_values(p)  # type: ignore[arg-type]
        elif isinstance(p, ast.Name) and p.id in aliases:
            choices += aliases[p.id]
    optional = any(isinstance(p, ast.Constant) and p.value is None for p in parts)
    if names >= {"bool", "str"}:
        return {"kind": "optional_str"}
    if "bool" in names:
        return {"kind": "bool"}
    if choices and not names & {"str", "int"}:
        return {"kind": "choices", "choices": choices, "optional": optional}
    if any(isinstance(p, ast.Subscript) and getattr(p.value, "id", "") in {"list", "tuple", "set"} for p in parts):
        return {"kind": "list"}
    if "int" in names:
        return {"kind": "int"}
    if "float" in names:
        return {"kind": "float"}
    out: dict[str, Any] = {"kind": "str"}
    if choices:
        out["suggested"] = choices
    return out


def _class_fields(src: Source, class_name: str) -> dict[str, ast.AST]:
    """Annotated fields of a class defined under vllm/ (its bases' fields first)."""
    for path in src.python_files("vllm"):
        if f"class {class_name}" not in src.text(path):
            continue
        for node in src.tree(path).body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                fields: dict[str, ast.AST] = {}
                for base in node.bases:
                    if isinstance(base, ast.Name) and base.id not in {"object"}:
                        with contextlib.suppress(LookupError):
                            fields.update(_class_fields(src, base.id))
                for stmt in node.body:
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        fields[stmt.target.id] = stmt.annotation
                return fields
    raise LookupError(class_name)


def _explicit(call: ast.Call) -> dict[str, Any] | None:
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    action = kw.get("action")
    if action is not None and ast.unparse(action) in {"argparse.BooleanOptionalAction", "'store_true'"}:
        return {"kind": "bool"} if "Optional" in ast.unparse(action) else {"kind": "flag"}
    if "choices" in kw:
        try:
            return {"kind": "choices", "choices": ast.literal_eval(kw["choices"]), "optional": False}
        except ValueError:
            return {"kind": "str"}
    if "type" in kw:
        t = ast.unparse(kw["type"])
        return {"kind": {"int": "int", "float": "float"}.get(t, "str")}
    return None


def cli(src: Source) -> dict[str, Any]:
    aliases = _literal_aliases(src)
    flags: dict[str, Any] = {}
    tree = src.tree(ENGINE_ARGS)
    engine = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "EngineArgs")
    add_cli_args = next(n for n in engine.body if isinstance(n, ast.FunctionDef) and n.name == "add_cli_args")
    groups: dict[str, str] = {}
    for node in ast.walk(add_cli_args):
        # <group>_kwargs = get_kwargs(SomeConfig)
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "get_kwargs"
            and isinstance(node.value.args[0], ast.Name)
        ):
            groups[node.targets[0].id] = node.value.args[0].id  # type: ignore[union-attr]
    for node in ast.walk(add_cli_args):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
        long = [n for n in names if n.startswith("--")]
        if not long:
            continue
        kind = _explicit(node)
        source = None
        for k in node.keywords:
            if k.arg is None and isinstance(k.value, ast.Subscript):
                group = getattr(k.value.value, "id", "")
                field = ast.literal_eval(k.value.slice)
                source = (groups.get(group), field)
            elif k.arg is None and isinstance(k.value, ast.Dict):
                for v in k.value.values:
                    if isinstance(v, ast.Subscript):
                        source = (groups.get(getattr(v.value, "id", "")), ast.literal_eval(v.slice))
        if kind is None and source and source[0]:
            annotation = _class_fields(src, source[0]).get(source[1])
            kind = _kind(annotation, aliases) if annotation is not None else {"kind": "str"}
        entry = {**(kind or {"kind": "str"}), "config": f"{source[0]}.{source[1]}" if source else None}
        for n in long:
            flags[n] = entry
    frontend = _class_fields(src, "FrontendArgs")
    for field, annotation in frontend.items():
        flags.setdefault(
            f"--{field.replace('_', '-')}", {**_kind(annotation, aliases), "config": f"FrontendArgs.{field}"}
        )
    # `--lora-modules` takes name=path pairs (LoRAParserAction) and `--middleware` appends: both lists.
    flags["--lora-modules"] = {"kind": "list", "config": "BaseFrontendArgs.lora_modules", "item": "name=path"}
    return {"flags": dict(sorted(flags.items()))}


def metrics(src: Source) -> dict[str, Any]:
    tree = src.tree(LOGGERS)
    found: dict[str, Any] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        name = kw.get("name")
        if not (isinstance(name, ast.Constant) and str(name.value).startswith("vllm:")):
            continue
        func = ast.unparse(node.func)
        kind = "counter" if "counter" in func else "histogram" if "histogram" in func else "gauge"
        labels = ast.unparse(kw["labelnames"]) if "labelnames" in kw else ""
        found[str(name.value)] = {"type": kind, "labelnames": labels}
    buckets: dict[str, list[float]] = {}
    for node in src.tree(BUCKETS).body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id.endswith("_BUCKETS")
        ):
            buckets[node.target.id] = list(ast.literal_eval(node.value))  # type: ignore[arg-type]
    engine = src.tree(ENGINE)
    finish = next(n for n in engine.body if isinstance(n, ast.ClassDef) and n.name == "FinishReason")
    reasons = [t.targets[0].id.lower() for t in finish.body if isinstance(t, ast.Assign)]  # type: ignore[union-attr]
    admission: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ADMISSION_REASONS":
            admission = list(ast.literal_eval(node.value))
    excluded: list[str] = []
    for node in ast.walk(src.tree(INSTRUMENTATOR)):
        if isinstance(node, ast.keyword) and node.arg == "excluded_handlers":
            excluded = list(ast.literal_eval(node.value))
    return {
        "metrics": dict(sorted(found.items())),
        "buckets": buckets,
        "finish_reasons": reasons,
        "admission_reasons": admission,
        "http_excluded_handlers": excluded,
    }


def _assigned(tree: ast.AST, name: str) -> ast.AST:
    """The value first assigned to `name` (plainly or with an annotation) anywhere in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            assert node.value is not None, name
            return node.value
    raise LookupError(name)


def loaders(src: Source) -> dict[str, Any]:
    formats = _assigned(src.tree(LOADERS), "_LOAD_FORMAT_TO_MODEL_LOADER")
    assert isinstance(formats, ast.Dict)
    runai = next(
        n
        for n in ast.walk(src.tree(RUNAI_LOADER))
        if isinstance(n, ast.ClassDef) and n.name == "RunaiModelStreamerLoader"
    )
    dockerfile = src.text(DOCKERFILE)
    return {
        "load_formats": sorted(ast.literal_eval(k) for k in formats.keys if k is not None),
        "runai_streamer_extra_config_keys": sorted(ast.literal_eval(_assigned(runai, "allowed_keys"))),
        "object_storage_schemes": ast.literal_eval(_assigned(src.tree(RUNAI_UTILS), "SUPPORTED_SCHEMES")),
        "image_installs_runai_streamer_s3": "runai-model-streamer[s3" in dockerfile,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src = Source(Path(argv[0]))
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "cli.json").write_text(json.dumps(cli(src), indent=1, sort_keys=True) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics(src), indent=1, sort_keys=True) + "\n")
    (out / "loaders.json").write_text(json.dumps(loaders(src), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
