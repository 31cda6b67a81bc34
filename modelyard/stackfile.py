"""Reading a platform stack file: `Pulumi.<env>.yaml`'s `config:` mapping, and its `modelyard:platform`
value validated into a PlatformConfig (modelyard/config.py) with the toolkit's errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.config import FULL_KEY, PlatformConfig
from modelyard.policies.governance.conventions import CONFIG_NAMESPACE
from modelyard.validation import ConfigError, fmt_value, read_yaml, validate_stack_key


def parse_platform_config(raw: Any, *, stack: str, source: str) -> PlatformConfig:
    """Validate the value of `modelyard:platform` for `stack`; raise ConfigError listing every problem."""
    return validate_stack_key(PlatformConfig, raw, key=FULL_KEY, stack=stack, source=source)


def read_stack_config(path: Path, *, stack: str, key: str = FULL_KEY) -> dict[str, Any]:
    """The `config:` mapping of a Pulumi stack file, with clear errors for unreadable files; `key` is the
    one `modelyard:` key the project reads."""
    source = path.name
    document = read_yaml(path, stack=stack, missing=f"stack file not found: {path}")
    if not isinstance(document, Mapping) or not isinstance(document.get("config"), Mapping):
        raise ConfigError(stack, source, ["the file must be a mapping with a top-level 'config:' mapping"])
    config = dict(document["config"])
    disabled = config.get(DISABLE_DEFAULT_PROVIDERS)
    if disabled is not None and not (isinstance(disabled, list) and all(isinstance(p, str) for p in disabled)):
        raise ConfigError(
            stack,
            source,
            [f'{DISABLE_DEFAULT_PROVIDERS}: must be a list of provider names, e.g. ["*"] (got {fmt_value(disabled)})'],
        )
    ours = [k for k in config if isinstance(k, str) and k.startswith(f"{CONFIG_NAMESPACE}:")]
    unknown = [k for k in ours if k != key]
    if unknown:
        raise ConfigError(
            stack, source, [f"{k}: unknown config key; this project reads only {key}" for k in sorted(unknown)]
        )
    if key not in config:
        raise ConfigError(stack, source, [f"{key}: is required but missing"])
    value = config[key]
    if isinstance(value, Mapping) and "secure" in value and len(value) == 1:
        raise ConfigError(stack, source, [f"{key}: must be plain config, not a secret"])
    return config


#: Pulumi's setting that turns off default providers (a list of package names, or "*").
DISABLE_DEFAULT_PROVIDERS = "pulumi:disable-default-providers"


def load_platform_config(path: Path, *, stack: str) -> PlatformConfig:
    """Read and validate a stack file's platform config."""
    config = read_stack_config(path, stack=stack)
    return parse_platform_config(config[FULL_KEY], stack=stack, source=path.name)
