"""Pulumi entry point of the platform project: `pulumi up -s <env>` runs this."""

from modelyard.programs import run_platform

run_platform()
