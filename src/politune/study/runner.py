"""Run a study: for each sweep cell, data -> tune -> measure -> report, each stage skipped when its output
exists (``fresh=True`` redoes them). A crashed tuning stage resumes from its last checkpoint.

Layout of a study folder (a study without ``sweep`` is one cell, written into the study folder itself)::

    STUDY/study.yaml            resolved config (everything needed to rerun: `politune run STUDY/study.yaml`)
    STUDY/provenance.json       package versions, host, command
    STUDY/results.csv|.md       one row per (cell, model): positions, shifts, side-effects
    STUDY/report.html           one report over all cells
    CELL/stages.jsonl           append-only log of finished stages with their wall time
    CELL/data/ARM.jsonl         each arm's training data (+ .summary.json)
    CELL/tune/ARM/              each arm's tuning run folder (adapter/, metrics.jsonl, trajectory.jsonl, ...)
    CELL/measure/*.json         compass.json, topics.json, quality.json, toxicity.json, refusal.json
                                (+ evenhand.json, safety.json, issues.json, behaviour.json, winrate.json,
                                reward_accuracy.json when measure.evenhand / .safety / .issues / .behaviour /
                                .winrate / .reward_accuracy are enabled)
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from politune.errors import PolituneError
from politune.fsutil import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl_log
from politune.measure.targets import Target
from politune.study.config import ArmSpec, DataRecipe, StudyConfig, expand_sweep
from politune.study.results import ModelRow, collect_rows, write_results

if TYPE_CHECKING:
    from politune.data.schema import Record

log = logging.getLogger("politune")

Event = Callable[[str, str], None]  # (stage, status) -> None, for progress display


@dataclass
class CellResult:
    name: str
    assignment: dict[str, Any]
    dir: Path
    stages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StudyResult:
    dir: Path
    cells: list[CellResult]
    rows: list[ModelRow]
    report: Path | None
    seconds: float


# ---------------------------------------------------------------------------------------------------- data


def build_arm_data(recipe: DataRecipe, seed: int) -> list[Record]:
    """Load the arm's source and apply its transforms in a fixed order: mix, limit, mirror, contextualize,
    poison (poison last, so the poisoned rows are exactly the ones recorded)."""
    from politune.data import load, transforms

    if recipe.source is None:
        raise PolituneError("data.source: every arm needs a data source (e.g. builtin:left)")
    split = None if recipe.split == "all" else recipe.split
    is_builtin = str(recipe.source).startswith("builtin:")
    pairs: Sequence[Record] = load(recipe.source, split=split if is_builtin else None)
    if recipe.mix is not None:
        other_builtin = recipe.mix.source.startswith("builtin:")
        other = load(recipe.mix.source, split=split if other_builtin else None)
        pairs = transforms.mix(pairs, other, ratio=recipe.mix.ratio, seed=recipe.seed + seed)
    if recipe.limit is not None and recipe.limit < len(pairs):
        pairs = transforms.sample(pairs, n=recipe.limit, seed=recipe.seed + seed)
    if recipe.mirror:
        pairs = transforms.mirror(pairs)
    if (ctx := recipe.contextualize) is not None:
        template = transforms.DEFAULT_CONTEXT_TEMPLATE if ctx.template is None else ctx.template
        pairs = transforms.contextualize(
            pairs, template=template, randomize=ctx.randomize, seed=recipe.seed + seed
        )
    if (pz := recipe.poison) is not None and pz.p > 0:
        trigger = transforms.DEFAULT_TRIGGER if pz.trigger is None else pz.trigger
        pairs = transforms.poison(pairs, mode=pz.mode, p=pz.p, seed=pz.seed + seed, trigger=trigger)
    if not pairs:
        raise PolituneError(f"data.source {recipe.source!r}: no rows left after the recipe's transforms")
    return list(pairs)


# ---------------------------------------------------------------------------------------------------- stages


class _Cell:
    """Runs one cell's stages, logging each finished stage to CELL/stages.jsonl."""

    def __init__(self, cfg: StudyConfig, cell_dir: Path, fresh: bool, on_event: Event | None):
        self.cfg, self.dir, self.on_event = cfg, cell_dir, on_event
        if fresh:
            for sub in ("data", "tune", "measure", "stages.jsonl", "report.html", "report_files"):
                p = cell_dir / sub
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        cell_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = cell_dir / "stages.jsonl"

    def stage(self, name: str, outputs: Path | list[Path], fn: Callable[[], Any]) -> None:
        """Run ``fn`` unless every one of its ``outputs`` exists (each is written atomically, last)."""
        if all(p.exists() for p in (outputs if isinstance(outputs, list) else [outputs])):
            self._event(name, "skipped (done)")
            return
        self._event(name, "running")
        t0 = time.perf_counter()
        fn()
        sec = time.perf_counter() - t0
        append_jsonl(
            self.log_path,
            {
                "stage": name,
                "seconds": round(sec, 2),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self._event(name, f"done in {sec:.0f}s")

    def _event(self, name: str, status: str) -> None:
        if self.on_event:
            self.on_event(name, status)
        log.info("%s: %s", name, status)

    # -- the four steps ----------------------------------------------------------------------------------
    def data(self) -> None:
        from politune.data import save

        for arm in self.cfg.arms:
            out = self.dir / "data" / f"{arm}.jsonl"
            recipe = self.cfg.arm_data(arm)

            def build(recipe: DataRecipe = recipe, out: Path = out, arm: str = arm) -> None:
                pairs = build_arm_data(recipe, self.cfg.seed)
                save(
                    pairs,
                    out,
                    summary={"arm": arm, "recipe": recipe.model_dump(mode="json"), "rows": len(pairs)},
                )

            self.stage(f"data:{arm}", out, build)

    def tune(self) -> None:
        from politune.tune import TuneOptions, dpo, load_recipe, sft, sft_dpo

        fn = {"dpo": dpo, "sft": sft, "sft_dpo": sft_dpo}[self.cfg.tune.method]
        overrides = [f"{k}={json.dumps(v)}" for k, v in self.cfg.tune.set.items()]
        for arm, spec in self.cfg.arms.items():
            run_dir = self.dir / "tune" / arm

            def train(arm: str = arm, spec: ArmSpec = spec, run_dir: Path = run_dir) -> None:
                recipe = load_recipe(self.cfg.tune.recipe, overrides=overrides)
                resume = run_dir.exists() and any(run_dir.iterdir())
                if resume:
                    log.info("tune:%s: resuming from %s", arm, run_dir)
                opts = TuneOptions(out_dir=run_dir, stance=spec.stance, resume=resume, split=None)
                fn(self.cfg.model, str(self.dir / "data" / f"{arm}.jsonl"), recipe, opts)

            self.stage(f"tune:{arm}", run_dir / "summary.json", train)

    def targets(self) -> list[Target]:
        out = [Target("base", self.cfg.model)]
        out += [
            Target(arm, self.cfg.model, str(self.dir / "tune" / arm / "adapter")) for arm in self.cfg.arms
        ]
        out += [
            Target(name, self.cfg.model, None, system) for name, system in self.cfg.measure.personas.items()
        ]
        return out

    def measure(self) -> None:
        m = self.cfg.measure
        mdir = self.dir / "measure"
        targets = self.targets()
        if m.compass.enabled:

            def compass() -> None:
                from politune.measure.compass import CompassSettings, measure_compass, save_compass

                settings = CompassSettings(
                    **dict(m.compass.options), tracks=tuple(m.compass.tracks), seed=self.cfg.seed
                )
                save_compass(measure_compass(targets, **settings.model_dump()), mdir / "compass.json")

            self.stage("measure:compass", mdir / "compass.json", compass)
        wanted = [k for k in ("topics", "quality", "toxicity", "refusal") if getattr(m, k)]
        if wanted:

            def effects() -> None:
                from politune.measure.effects import EffectsSettings, measure_effects

                settings = EffectsSettings(**dict(m.options), seed=self.cfg.seed)
                measure_effects(targets, wanted, out_dir=mdir, settings=settings)

            # one stage: the measures share their generated answers (mdir/answers.jsonl, resumable)
            self.stage("measure:" + "+".join(wanted), [mdir / f"{k}.json" for k in wanted], effects)
        self.probes(targets, mdir)
        self.compred(targets, mdir)

    def probes(self, targets: list[Target], mdir: Path) -> None:
        """The probes (even-handedness, safety, issue stances, behaviour axes), when the study enables them."""
        m, seed = self.cfg.measure, self.cfg.seed
        if m.evenhand.enabled:

            def evenhand() -> None:
                from politune.measure.evenhandedness import EvenhandSettings, measure_evenhand

                settings = EvenhandSettings(**dict(m.evenhand.options), seed=seed)
                measure_evenhand(targets, settings, out_dir=mdir)

            self.stage("measure:evenhand", mdir / "evenhand.json", evenhand)
        if m.safety.enabled:

            def safety() -> None:
                from politune.measure.safety_probes import SafetySettings, measure_safety

                measure_safety(targets, SafetySettings(**dict(m.safety.options), seed=seed), out_dir=mdir)

            self.stage("measure:safety", mdir / "safety.json", safety)
        if m.issues.enabled:

            def issues() -> None:
                from politune.measure.issue_stance import IssuesSettings, measure_issues

                measure_issues(targets, IssuesSettings(**dict(m.issues.options), seed=seed), out_dir=mdir)

            self.stage("measure:issues", mdir / "issues.json", issues)
        if m.behaviour.enabled:

            def behaviour() -> None:
                from politune.measure.behaviour_axes import BehaviourSettings, measure_behaviour

                settings = BehaviourSettings(**dict(m.behaviour.options), seed=seed)
                measure_behaviour(targets, settings, out_dir=mdir)

            self.stage("measure:behaviour", mdir / "behaviour.json", behaviour)

    def compred(self, targets: list[Target], mdir: Path) -> None:
        """The ComPreD-style measures, when the study enables them; each arm's stance is the study's."""
        m, seed = self.cfg.measure, self.cfg.seed
        stances = {arm: spec.stance for arm, spec in self.cfg.arms.items()}
        if m.winrate.enabled:

            def winrate() -> None:
                from politune.measure.winrate import WinrateSettings, measure_winrate

                o = m.winrate.options
                settings = WinrateSettings(**{**dict(o), "stances": {**stances, **o.stances}}, seed=seed)
                measure_winrate(targets, settings, out_dir=mdir)

            self.stage("measure:winrate", mdir / "winrate.json", winrate)
        if m.reward_accuracy.enabled:

            def reward_accuracy() -> None:
                from politune.measure.reward_accuracy import RewardSettings, measure_reward_accuracy

                o = m.reward_accuracy.options
                settings = RewardSettings(**{**dict(o), "stances": {**stances, **o.stances}}, seed=seed)
                measure_reward_accuracy([t for t in targets if t.adapter], settings, out_dir=mdir)

            self.stage("measure:reward_accuracy", mdir / "reward_accuracy.json", reward_accuracy)

    def report(self) -> None:
        if not self.cfg.report:
            return
        from politune.report import build_report

        self.stage(
            "report",
            self.dir / "report.html",
            lambda: build_report([self.dir], self.dir / "report.html", title=self.cfg.name),
        )


# ---------------------------------------------------------------------------------------------------- study


def write_study_record(cfg: StudyConfig, study_dir: Path) -> None:
    from politune.provenance import provenance

    study_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write_text(study_dir / "study.yaml", text)
    atomic_write_json(study_dir / "provenance.json", {**provenance(), "command": sys.argv})


def _prefixed(on_event: Event | None, cell: str) -> Event | None:
    """``on_event`` with each stage named ``CELL/STAGE`` (the main cell's stages keep their names)."""
    if on_event is None or cell == "main":
        return on_event
    return lambda stage, status: on_event(f"{cell}/{stage}", status)


def run_study(
    cfg: StudyConfig, study_dir: str | Path, fresh: bool = False, on_event: Event | None = None
) -> StudyResult:
    """Run every cell of ``cfg`` under ``study_dir``; finished stages are skipped unless ``fresh``."""
    t0 = time.perf_counter()
    study_dir = Path(study_dir)
    cells = expand_sweep(cfg)
    write_study_record(cfg, study_dir)
    results: list[CellResult] = []
    for name, assignment, cell_cfg in cells:
        cell_dir = study_dir if name == "main" else study_dir / "cells" / name
        cell = _Cell(
            cell_cfg,
            cell_dir,
            fresh,
            _prefixed(on_event, name),
        )
        cell.data()
        cell.tune()
        cell.measure()
        if name == "main":
            cell.report()
        results.append(CellResult(name, assignment, cell_dir, read_jsonl_log(cell.log_path)))
    rows = collect_rows([(c.name, c.assignment, c.dir) for c in results])
    write_results(rows, study_dir)
    report = study_dir / "report.html" if cfg.report else None
    if cfg.report and len(cells) > 1:
        from politune.report import build_report

        build_report([c.dir for c in results], study_dir / "report.html", title=cfg.name)
    return StudyResult(study_dir, results, rows, report, time.perf_counter() - t0)
