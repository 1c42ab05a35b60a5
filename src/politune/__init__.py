"""politune: measure and steer the political and economic leaning of language models.

Pillars (one sub-package each): ``data`` -> ``tune`` -> ``measure`` -> ``report`` / ``serve``, plus
``generate`` (teacher-written data), ``models`` (registry and loading), ``config`` and ``cli``.
"""

__version__ = "0.1.0"
