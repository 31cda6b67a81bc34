"""The CrossGuard policy pack. Its rules live in `governance/` (importable as `modelyard.policies.governance`
from this repository's environment, and as `governance` inside the pack's own environment)."""
