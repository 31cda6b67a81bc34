"""AWS list prices from `prices.yaml` (the checkout's, see sources.py): one price table for the cost estimate and for
the GPU-cost recording rules Prometheus evaluates live, so both show the same figures."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field

from . import gpus as gpu_table
from .sources import data_file

PRICES_FILE = Path(__file__).parent / "prices.yaml"
#: How messages name the file: its path in the repository.
PRICES_NAME = "policies/governance/prices.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Source(_Model):
    date: str
    what: str


class Price(_Model):
    usd: Annotated[float, Field(ge=0)]
    source: str


class Assumption(_Model):
    value: float
    source: str


class InstancePrice(Price):
    """An instance type's hourly price; its GPUs come from the GPU table (gpus.py)."""


class ServicePrice(Price):
    unit: str
    what: str


class RegionPrices(_Model):
    services_usd: dict[str, ServicePrice]
    ec2_hourly_usd: dict[str, InstancePrice]


class PriceBook(_Model):
    hours_per_month: Annotated[int, Field(gt=0)]
    sources: dict[str, Source]
    assumptions: dict[str, Assumption]
    regions: dict[str, RegionPrices]

    def region(self, region: str) -> RegionPrices:
        """The prices for `region`; KeyError names the regions that are priced."""
        if region not in self.regions:
            raise KeyError(f"no prices for region {region!r} in {PRICES_NAME}; priced: {', '.join(self.regions)}")
        return self.regions[region]

    def ec2_hourly(self, region: str, instance_type: str) -> float | None:
        price = self.region(region).ec2_hourly_usd.get(instance_type)
        return None if price is None else price.usd

    def gpus(self, instance_type: str) -> int | None:
        """GPUs per instance of `instance_type`, from the GPU table (0 for a priced CPU type), or None when
        neither knows it."""
        known = gpu_table.instance_type(instance_type)
        if known is not None:
            return known.gpus
        if any(instance_type in region.ec2_hourly_usd for region in self.regions.values()):
            return 0
        return None

    @property
    def spot_discount(self) -> float:
        return self.assumptions["spot_discount"].value


def price_book(path: Path | None = None) -> PriceBook:
    """The price table, validated (every entry's source must be declared): `path`, else the checkout's
    `policies/governance/prices.yaml` (sources.py), else the installed package's."""
    return _load(path or data_file(PRICES_FILE.name))


@cache
def _load(path: Path) -> PriceBook:
    book = PriceBook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    declared = set(book.sources)
    used = {a.source for a in book.assumptions.values()} | {
        p.source for r in book.regions.values() for p in [*r.ec2_hourly_usd.values(), *r.services_usd.values()]
    }
    if used - declared:
        raise ValueError(f"{path}: undeclared sources {sorted(used - declared)}")
    return book
