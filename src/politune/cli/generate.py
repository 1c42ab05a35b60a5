"""``politune generate``: a corpus of posts -> instruction and preference data through a teacher model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from politune.cli.common import JsonOption, OverridesOption, console, err_console, print_json

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID

    from politune.generate import GenerateConfig


def _progress() -> Progress:
    """The shared progress bar plus a rate column (answers per second)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    from politune.cli.common import progress

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:.2f}/s" if task.speed else "-/s", style="progress.data.speed")

    bar = progress()
    bar.columns = (*bar.columns[:3], RateColumn(), *bar.columns[3:])
    return bar


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def setting_option(*flags: str, help: str, default: object) -> Any:
    """An option for one generate setting: None unless given, so that the --config file's value (else the
    setting's ``default``, shown in the help) stands."""
    return typer.Option(None, *flags, help=f"{help} (default: {default})")


CorpusOption = setting_option(
    "--corpus",
    "-c",
    help="Posts: builtin:posts, a .jsonl/.csv/.parquet file, a dataset folder or hf:OWNER/NAME.",
    default="builtin:posts",
)
TargetOption = setting_option(
    "--target",
    "-t",
    help="Ideology of the positive answers: left, right, or a name with a target.NAME.txt in --templates.",
    default="left",
)
TeacherOption = setting_option(
    "--teacher",
    help="Local model (registry name, folder, hub id), or with --api-base the model name on the server.",
    default="smollm2-135m",
)
ApiBaseOption = typer.Option(
    None,
    "--api-base",
    help="OpenAI-compatible server URL ending in /v1 (vLLM, "
    "Ollama, OpenAI, politune serve); key from $OPENAI_API_KEY.",
)
ConcurrencyOption = setting_option("--concurrency", help="HTTP teacher: requests in flight.", default=8)
OutOption = setting_option(
    "--out", "-o", help="Output folder (re-running resumes from its cache).", default="generated"
)
LimitOption = typer.Option(None, "--limit", "-n", help="Only the first N posts.")
TemplatesOption = typer.Option(
    None,
    "--templates",
    help="Folder of prompt templates overriding the "
    "built-in ones (filter[.TARGET].txt, write[.TARGET].txt, target.NAME.txt).",
)
TextColumnOption = setting_option("--text-column", help="Column holding the post text.", default="text")
SeedOption = setting_option("--seed", help="Sampling seed.", default=0)
BatchSizeOption = setting_option("--batch-size", help="Local teacher: posts per batch.", default=8)
DeviceOption = setting_option("--device", help="Local teacher: auto | cpu | cuda | mps.", default="auto")
ConfigOption = typer.Option(None, "--config", help="YAML file of generate settings (see docs/generate.md).")
DryRunOption = typer.Option(
    False,
    "--dry-run",
    help="Print the exact prompts for the first posts (3, or --limit) and exit; no model is loaded.",
)


def generate(
    corpus: str = CorpusOption,
    target: str = TargetOption,
    teacher: str = TeacherOption,
    api_base: str = ApiBaseOption,
    concurrency: int = ConcurrencyOption,
    out: Path = OutOption,
    limit: int = LimitOption,
    templates: Path = TemplatesOption,
    text_column: str = TextColumnOption,
    seed: int = SeedOption,
    batch_size: int = BatchSizeOption,
    device: str = DeviceOption,
    config: Path = ConfigOption,
    overrides: list[str] = OverridesOption,
    dry_run: bool = DryRunOption,
    json_out: bool = JsonOption,
) -> None:
    """Filter posts and write instruction / positive / negative triplets with a teacher model (PoliTune's data
    pipeline). Writes OUT/preference.jsonl, instruction.jsonl, filter.jsonl, rejects.jsonl, summary.json.
    Resumable: kill it at any moment and run the same command again."""
    from politune.generate import dry_run as do_dry_run
    from politune.generate import run_generate

    flags = {
        "corpus": corpus,
        "target": target,
        "teacher": teacher,
        "out": str(out) if out else None,
        "limit": limit,
        "templates": str(templates) if templates else None,
        "text_column": text_column,
        "seed": seed,
        "batch_size": batch_size,
        "device": device,
        "api": {"base_url": api_base, "concurrency": concurrency},
    }
    cfg = _config(config, flags, overrides)

    if dry_run:
        shown = do_dry_run(cfg, n=limit or 3)
        if json_out:
            print_json(shown)
        else:
            _print_prompts(cfg, shown)
        return

    tasks: dict[str, TaskID] = {}
    with _progress() as bar:

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:  # cached answers start the bar, so the rate counts new work only
                tasks[stage] = bar.add_task(stage, total=total, completed=done)
            bar.update(tasks[stage], completed=done, total=total)

        result = run_generate(cfg, progress=on_progress)
    s = result.summary
    if json_out:
        print_json(s)
    else:
        _print_summary(s, result.out)
    if not s["complete"]:
        err_console.print(
            f"{s['counts']['transport_failed']} teacher request(s) failed (see summary.json); "
            f"run the same command again to retry them",
            highlight=False,
        )
        raise typer.Exit(1)


def _config(config: Path | None, flags: dict[str, Any], overrides: list[str] | None) -> GenerateConfig:
    """The settings: the YAML file, then the flags that were given, then the ``--set`` overrides."""
    from politune.config import apply_overrides, parse_overrides, read_yaml, validate_config
    from politune.generate import GenerateConfig

    data = read_yaml(config) if config is not None else {}
    api = {k: v for k, v in flags.pop("api").items() if v is not None}
    data = apply_overrides(data, {k: v for k, v in flags.items() if v is not None})
    if api:
        data = apply_overrides(data, {"api": api})
    data = apply_overrides(data, parse_overrides(overrides))
    return validate_config(GenerateConfig, data, f"{config}" if config else "generate options")


def _print_prompts(cfg: GenerateConfig, shown: list[dict[str, Any]]) -> None:
    from rich.text import Text

    teacher_desc = f"{cfg.teacher} at {cfg.api.base_url}" if cfg.api.base_url else f"local {cfg.teacher}"
    console.print(
        f"[bold]teacher[/]: {teacher_desc}   [bold]target[/]: {cfg.target}   "
        f"[bold]templates[/]: {shown[0]['templates']['filter'] if shown else '-'}, "
        f"{shown[0]['templates']['write'] if shown else '-'}",
        highlight=False,
    )
    for row in shown:
        for stage in ("filter", "write"):
            if row[stage] is None:
                continue
            console.rule(f"post {row['post_id']} - {stage}")
            for m in row[stage]:
                console.print(Text.assemble((f"{m['role']}: ", "bold"), m["content"]), highlight=False)


def _print_summary(s: dict[str, Any], out: Path) -> None:
    c = s["counts"]
    console.print(
        f"{c['posts']} posts -> kept {c['kept']} -> wrote {c['written']} pairs "
        f"(rejected: {c['rejected_filter']} at filter, {c['rejected_write']} at write; "
        f"cache: {s['cache']['entries_reused']} reused, {s['cache']['entries_added']} new) "
        f"in {s['elapsed_s']}s",
        highlight=False,
    )
    fm = s.get("filter_metrics")
    if fm:

        def f(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.2f}"

        console.print(
            f"filter vs hidden labels (n={fm['n']}): precision {f(fm['precision'])}, recall "
            f"{f(fm['recall'])}, F1 {f(fm['f1'])}, unrated {fm['unrated']}",
            highlight=False,
        )
    console.print(
        f"outputs in {out}/ (preference.jsonl, instruction.jsonl, filter.jsonl, rejects.jsonl, summary.json)",
        highlight=False,
    )
