"""report pillar: charts (PNG/SVG), one self-contained HTML report and a Markdown summary from result files.

    from politune.report import build_report
    result = build_report([Path("runs/study")], Path("report.html"))

Inputs are the result files of docs/results.md, found recursively under each run folder; see docs/report.md.
The plotting functions work alone on a result file, its dict, or the parsed models.
"""

from politune.report.build import ReportResult, build_report
from politune.report.chart_compass import plot_compass
from politune.report.chart_topics import plot_topics
from politune.report.charts import plot_training, plot_trajectory, save_figure
from politune.report.collect import collect
from politune.report.views import ReportData

__all__ = [
    "build_report",
    "ReportResult",
    "collect",
    "ReportData",
    "plot_compass",
    "plot_trajectory",
    "plot_topics",
    "plot_training",
    "save_figure",
]
