"""Studies: ``politune demo`` and ``politune run study.yaml``.

A study is a data recipe + a tune recipe + measures (``config.StudyConfig``), optionally swept over any config
key; ``runner.run_study`` runs each cell's stages (data -> tune -> measure -> report), skipping finished ones.
"""

from importlib import resources
from pathlib import Path

from politune.study.config import StudyConfig, expand_sweep, load_study
from politune.study.runner import StudyResult, run_study

__all__ = ["StudyConfig", "StudyResult", "demo_config_path", "expand_sweep", "load_study", "run_study"]


def demo_config_path() -> Path:
    """The built-in demo study (``politune demo``)."""
    return Path(str(resources.files("politune.study") / "studies" / "demo.yaml"))
