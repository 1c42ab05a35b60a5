"""politune: measure and steer the political and economic leaning of language models.

Pillars (one sub-package each): ``data`` -> ``tune`` -> ``measure`` -> ``report`` / ``serve``, plus
``generate`` (teacher-written data), ``models`` (registry and loading), ``config`` and ``cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("politune")  # single source: pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
