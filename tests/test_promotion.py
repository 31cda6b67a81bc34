"""Promotion as a reviewed change (modelyard/promotion.py): the one-line catalog edit each canary verdict asks for,
every other byte of the file kept, the edited catalog validated again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from modelyard import promotion
from modelyard.programs import REPO_ROOT
from modelyard.workloads.catalog import parse_catalog

CATALOG = """\
# A comment that stays.
models:
  - name: embed   # trailing comment
    team: search
    runtime: {kind: modelyard, image_tag: 1.0.0-cpu}
    version: "1"
    resources: {cpu: "2", memory: 2Gi}
    replicas: {min: 2, max: 4}
    slo: {availability: 0.999, p99_latency_ms: 250}
    canary: {version: "2", traffic_percent: 25}
  - name: rank
    team: search
    runtime:
      kind: modelyard
      image_tag: 1.0.0-cpu
    version: r2026-11-01
    resources: {cpu: "2", memory: 2Gi}
    replicas: {min: 2, max: 4}
    slo: {availability: 0.999, p99_latency_ms: 250}
    canary:
      version: '2026-12-01'
      traffic_percent: 10
  - name: calm
    team: search
    runtime: {kind: modelyard, image_tag: 1.0.0-cpu}
    version: "1"
    resources: {cpu: "2", memory: 2Gi}
    replicas: {min: 2, max: 4}
    slo: {availability: 0.999, p99_latency_ms: 250}
"""


def verdicts(**by_model: str) -> dict[str, SimpleNamespace]:
    return {m: SimpleNamespace(extra={"verdict": v}, title=f"Canary analysis of {m}: {v}") for m, v in by_model.items()}


def changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(a.splitlines(), b.splitlines(), strict=True) if x != y]


def test_promote_and_rollback_are_one_line_each_and_keep_the_rest(tmp_path: Path) -> None:
    catalog = parse_catalog(yaml.safe_load(CATALOG), stack="prod", source="prod.yaml", tier="prod")
    decisions = {
        d.model: d for d in promotion.decide(catalog, verdicts(embed="promote", rank="rollback", calm="promote"))
    }
    assert set(decisions) == {"embed", "rank"}  # calm runs no canary
    assert (
        decisions["embed"].change == "version: 1 -> 2" and decisions["rank"].change == "canary.traffic_percent: 10 -> 0"
    )
    path = tmp_path / "prod.yaml"
    path.write_text(CATALOG)
    promoted = promotion.apply(path, decisions["embed"], stack="prod", tier="prod")
    assert changed_lines(CATALOG, promoted) == [('    version: "1"', '    version: "2"')]
    rolled = promotion.apply(path, decisions["rank"], stack="prod", tier="prod")
    assert changed_lines(promoted, rolled) == [("      traffic_percent: 10", "      traffic_percent: 0")]
    after = parse_catalog(yaml.safe_load(path.read_text()), stack="prod", source="prod.yaml", tier="prod")
    embed, rank = after.models[0], after.models[1]
    assert embed.version == "2" and not embed.canary_active  # the canary, now stable, is no longer deployed
    assert rank.version == "r2026-11-01" and not rank.canary_active
    assert path.read_text().startswith("# A comment that stays.\n") and "# trailing comment" in path.read_text()


def test_a_hold_changes_nothing() -> None:
    catalog = parse_catalog(yaml.safe_load(CATALOG), stack="prod", source="prod.yaml", tier="prod")
    [hold, _] = promotion.decide(catalog, verdicts(embed="hold", rank="hold"))
    assert hold.path is None and hold.change is None


@pytest.mark.parametrize(
    ("old", "value", "written"),
    [('version: "1"', "2", 'version: "2"'), ("version: '1'", "2", "version: '2'"), ("version: v1", "v2", "version: v2"),
     ("version: v1", "2", 'version: "2"'), ("traffic_percent: 25", 0, "traffic_percent: 0")],
)  # fmt: skip
def test_the_scalar_keeps_its_quoting(old: str, value: str | int, written: str) -> None:
    key = old.split(":")[0]
    assert promotion.set_scalar(f"a: 1\n{old}  # note\n", (key,), value) == f"a: 1\n{written}  # note\n"


def test_an_edit_that_would_not_validate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(CATALOG)
    bad = promotion.Decision("embed", "promote", "", ("models", 0, "version"), "not/valid", "x")
    with pytest.raises(
        promotion.EditError, match=r"the edited catalog does not validate: catalog\.models\[0\]\.version"
    ):
        promotion.apply(path, bad, stack="prod", tier="prod")
    assert path.read_text() == CATALOG
    with pytest.raises(promotion.EditError, match=r"models\.0: no key 'nope'"):
        promotion.set_scalar(CATALOG, ("models", 0, "nope"), 1)


def test_every_environments_catalog_can_be_edited_where_its_canaries_are() -> None:
    """The shipped catalogs: each running canary's promote and roll-back edits apply and validate."""
    for path in sorted((REPO_ROOT / "workloads" / "catalog").glob("*.yaml")):
        tier = path.stem
        text = path.read_text()
        catalog = parse_catalog(yaml.safe_load(text), stack=tier, source=path.name, tier=tier)
        running = [m.name for m in catalog.models if m.canary_active]
        for verdict in ("promote", "rollback"):
            for d in promotion.decide(catalog, verdicts(**dict.fromkeys(running, verdict))):
                assert d.path is not None and d.value is not None
                edited = promotion.set_scalar(text, d.path, d.value)
                assert len(changed_lines(text, edited)) == 1
                parse_catalog(yaml.safe_load(edited), stack=tier, source=path.name, tier=tier)
