"""What a LoRA adapter folder says about itself: its model card summary and its LoRA rank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from politune.errors import PolituneError


def read_model_card(adapter_dir: Path, max_chars: int = 600) -> dict[str, Any]:
    """Summary of an adapter's ``README.md`` model card: its YAML front matter (if any), its title and first
    paragraph of prose. Missing card -> ``{"missing": True}``."""
    path = adapter_dir / "README.md"
    if not path.is_file():
        return {"missing": True, "title": None, "summary": "", "meta": {}}
    text = path.read_text(encoding="utf-8", errors="replace")
    meta: dict[str, Any] = {}
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end > 0:
            import yaml

            try:
                loaded = yaml.safe_load(text[3:end])
                meta = loaded if isinstance(loaded, dict) else {}
            except yaml.YAMLError:
                meta = {}
            text = text[end + 4 :]
    title: str | None = None
    paras: list[str] = []
    cur: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            if title is None:
                title = s.lstrip("#").strip()
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        if not s:
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        cur.append(s)
    if cur:
        paras.append(" ".join(cur))
    summary = " ".join(paras[:2])
    if len(summary) > max_chars:
        summary = summary[: max_chars - 1].rstrip() + "…"
    meta = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool | list)}
    return {"missing": False, "title": title, "summary": summary, "meta": meta}


def adapter_rank(adapter_dir: Path) -> int:
    """Largest LoRA rank in an adapter's ``adapter_config.json`` (``r`` and any ``rank_pattern``)."""
    import json

    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise PolituneError(f"adapter {str(adapter_dir)!r}: unreadable adapter_config.json ({e})") from None
    ranks = [int(cfg.get("r") or 0), *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]]
    return max(ranks)
