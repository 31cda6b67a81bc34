"""Governance and cost for Pulumi stacks: one rule set and one cost estimator over the resources of a
preview, whether it came from `pulumi preview --json`, an offline `modelyard plan`, or CrossGuard.

Plain Python (the standard library, pydantic and PyYAML): it runs in the policy pack's own
environment as well as in this repository's. Modules import each other relatively for that reason.
"""
