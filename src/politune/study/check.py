"""``politune run --check``: validate a study without running anything (no model is loaded, nothing is
downloaded): every sweep cell's config, the tune recipe and its overrides, data sources and the model name."""

from __future__ import annotations

import json
import re
from pathlib import Path

from politune.errors import PolituneError
from politune.study.config import StudyConfig, expand_sweep

_HUB_ID = re.compile(r"^(hf:)?[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _check_source(src: str, where: str) -> str:
    if src.startswith("builtin:"):
        from politune.data.builtin import builtin_report

        builtin_report(src.split(":", 1)[1].split(":")[0])  # raises PolituneError for an unknown name
        return "built-in"
    if Path(src).exists():
        return "local"
    if _HUB_ID.match(src):
        return "hub (not fetched by --check)"
    raise PolituneError(f"{where}: data source {src!r} is not a built-in name, an existing path or a hub id")


def _check_model(name: str) -> str:
    from politune.models.registry import REGISTRY

    if name in REGISTRY:
        return f"registry ({REGISTRY[name].source})"
    if Path(name).is_dir():
        return "local directory"
    if _HUB_ID.match(name):
        return "hub id (not fetched by --check)"
    raise PolituneError(f"model {name!r}: not a registry name, a local directory or a hub id")


def check_study(cfg: StudyConfig) -> list[str]:
    """Raise PolituneError at the first problem; return a line per checked part."""
    from politune.tune import load_recipe
    from politune.tune.config import check_trl_keys

    lines = [f"model {cfg.model}: {_check_model(cfg.model)}"]
    lines += _check_probes(cfg)
    cells = expand_sweep(cfg)
    lines.append(f"{len(cells)} cell(s): " + ", ".join(name for name, _, _ in cells))
    for name, _, cell in cells:
        overrides = [f"{k}={json.dumps(v)}" for k, v in cell.tune.set.items()]
        recipe = load_recipe(cell.tune.recipe, overrides=overrides)
        check_trl_keys(recipe)
        for arm in cell.arms:
            d = cell.arm_data(arm)
            if d.source is None:
                raise PolituneError(f"cell {name}: arms.{arm}.data.source is missing")
            kind = _check_source(d.source, f"cell {name}: arms.{arm}.data.source")
            if d.mix is not None:
                _check_source(d.mix.source, f"cell {name}: arms.{arm}.data.mix.source")
            if name == cells[0][0]:
                lines.append(
                    f"arm {arm}: {d.source} ({kind}), tune {cell.tune.method} with recipe {recipe.name}"
                    + (
                        f" [{recipe.quantization} quantization: needs a GPU]"
                        if recipe.quantization != "none"
                        else ""
                    )
                )
    return lines


def _check_probes(cfg: StudyConfig) -> list[str]:
    """Load the prompt sets an enabled probe measure would use (a bad file fails here)."""
    lines = []
    ev, sa = cfg.measure.evenhand, cfg.measure.safety
    if ev.enabled:
        from politune.measure.pairs import load_pairs, subset_pairs

        pairs = subset_pairs(load_pairs(ev.options.pairs_file), ev.options.topics, ev.options.templates)
        lines.append(f"evenhand: {len(pairs)} prompt pairs from {ev.options.pairs_file}")
    if sa.enabled:
        from politune.measure.safety_probes import load_probes, subset_probes

        probes = subset_probes(load_probes(sa.options.probes_file), sa.options.per_category)
        lines.append(f"safety: {len(probes)} probes from {sa.options.probes_file}")
    iss, beh = cfg.measure.issues, cfg.measure.behaviour
    if iss.enabled:
        from politune.measure.issue_prompts import (
            load_issue_prompts,
            require_issue_fields,
            subset_issue_prompts,
        )

        o = iss.options
        prompts = subset_issue_prompts(load_issue_prompts(o.prompts_file), o.issues, o.templates, o.framings)
        require_issue_fields(prompts, "pro_pole", o.prompts_file)  # a study classifies offline
        lines.append(f"issues: {len(prompts)} issue prompts from {o.prompts_file}")
    if beh.enabled:
        from politune.measure.behaviour_axes import select_questions

        lines.append(
            f"behaviour: {len(select_questions(beh.options))} questions from {beh.options.questions_file}"
        )
    return lines + _check_compred(cfg)


def _check_compred(cfg: StudyConfig) -> list[str]:
    """Load the prompts and pairs the ComPreD-style measures would use, and check their communities and
    comparisons against the study's targets (a bad file or name fails here)."""
    from politune.measure.targets import Target

    lines = []
    wr, ra = cfg.measure.winrate, cfg.measure.reward_accuracy
    arms = {arm: spec.stance for arm, spec in cfg.arms.items()}
    targets = [Target("base", cfg.model)] + [Target(a, cfg.model) for a in (*arms, *cfg.measure.personas)]
    if wr.enabled:
        from politune.measure.winrate import load_prompts, plan_comparisons, subset_prompts

        items = subset_prompts(load_prompts(wr.options.prompts_file, wr.options.split), wr.options.limit)
        opts = wr.options.model_copy(update={"stances": {**arms, **wr.options.stances}})
        plan = plan_comparisons(targets, opts)
        lines.append(f"winrate: {len(items)} prompts, {sum(len(c.communities) for c in plan)} comparison(s)")
    if ra.enabled:
        from politune.measure.reward_accuracy import load_reward_pairs

        pairs, source = load_reward_pairs(ra.options)
        stances = {**arms, **ra.options.stances}
        if ra.options.pairs_file is None and (
            bad := [a for a in arms if stances[a] not in ("left", "right")]
        ):
            raise PolituneError(
                f"reward_accuracy: arm {bad[0]}: stance must be left or right for the built-in pairs"
            )
        lines.append(f"reward_accuracy: {len(pairs)} pairs from {source}")
    return lines
