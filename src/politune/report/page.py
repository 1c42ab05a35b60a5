"""What both renderings of a report (the HTML page and the Markdown summary) show."""

from __future__ import annotations

from dataclasses import dataclass

from politune.report.tables import SampleQuestion, Table
from politune.report.views import ReportData

# The probe charts, in the order both renderings show them (one section).
PROBE_CHARTS = ("evenhand", "safety", "issues", "behaviour")


@dataclass
class Page:
    title: str
    data: ReportData
    tables: dict[str, Table]
    captions: dict[str, str]  # chart name -> caption
    samples: list[SampleQuestion]  # held-out questions where the models differ most
    generated: str  # when the report was built (UTC)
