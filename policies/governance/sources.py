"""Where the engine's data files are read from: the checkout a command runs in, so that a fork is priced
and judged from itself even when the command that runs was installed from another checkout.

`modelyard` names its checkout once (`use_checkout`, from the directory it runs in or `--cwd`), and so do
the Pulumi programs (the directory the Pulumi CLI runs them in). Outside any checkout the installed
package's own files are read. A flag that names a file (`modelyard cost --prices F --usage F`) wins.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).parent
#: Where the files live in a checkout.
IN_CHECKOUT = Path("policies") / "governance"

_checkout: Path | None = None


def use_checkout(root: Path | None) -> None:
    """Read data files from the checkout at `root` from now on (None: the installed package's)."""
    global _checkout
    _checkout = root


def data_file(name: str) -> Path:
    """`policies/governance/<name>` of the checkout in use, else the installed package's."""
    if _checkout is not None:
        own = _checkout / IN_CHECKOUT / name
        if own.is_file():
            return own
    return PACKAGE / name
