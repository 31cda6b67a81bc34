"""The pull-request review report: what changes, what it costs, and which policy violations it adds or
fixes.

Two ways in:
- one real `pulumi preview --json`: the changes are the engine's own (each step's `op`, and its
  `detailedDiff` or `diffReasons` for the properties); cost and policy compare the steps' old states
  with their new states, when the preview holds the whole stack;
- two whole documents (offline plans, or previews with --show-sames), a base and a head: resources
  matched by URN, created, deleted, updated (inputs differ) or replaced (a known property the provider
  cannot update in place changes). No engine compared these two, so a value the head does not know
  yet is reported as known after apply, never as a replacement. The base is read and judged in a
  forked process while this one does the head (compare_previews); only digests, costs, violations and
  the inputs that differ cross over.

Replacements and deletions of stateful resources (buckets, KMS keys, the cluster, registries) lead
the report in bold. Output is sorted and stable: the same inputs give the same bytes.

The package: `changes` (the change model and the engine's report of one preview), `reader` (two whole
documents, the base in a forked process) and `render` (Markdown and JSON).
"""

from __future__ import annotations

from .changes import Change, Priced, Report, changed_properties, engine_report, property_at, split_preview
from .reader import Document, Side, compare, compare_previews
from .render import markdown, mermaid, to_json

__all__ = [
    "Change",
    "Document",
    "Priced",
    "Report",
    "Side",
    "changed_properties",
    "compare",
    "compare_previews",
    "engine_report",
    "markdown",
    "mermaid",
    "property_at",
    "split_preview",
    "to_json",
]
