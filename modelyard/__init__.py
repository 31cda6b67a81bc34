"""modelyard: a Pulumi blueprint for a production AI model-serving platform on AWS."""

from pathlib import Path

__version__ = "0.1.0"

# The layer folders sit at the top of the repo and are mapped into this package (pyproject.toml).
# `platform/` has no __init__.py so it can never shadow the standard library's `platform`; but
# setuptools' editable finder cannot resolve a mapped folder without one. From a source checkout,
# let the import system find it as a namespace portion of `modelyard` instead. This only affects
# names under `modelyard.`; a wheel install carries the folder inside the package and needs none of it.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "platform").is_dir():
    __path__.append(str(_checkout))
