"""data pillar: preference and instruction records, loaders for the published schemas, the built-in ideology
set, transforms (mirror, mix, poison, contextualize, dedup, split, sample, filter), validation and a
contamination check. See docs/data.md.

    from politune.data import load, save, to_dataset
    pairs = load("builtin:left", split="train")       # list[PreferencePair]
    ds = to_dataset(pairs)                             # TRL conversational prompt / chosen / rejected
"""

from politune.data.io import read_table, write_table
from politune.data.loaders import LoadOptions, LoadReport, load, load_report, save, summary_path, to_dataset
from politune.data.schema import META_KEYS, InstructionExample, PreferencePair, Prompt, Record, prompt_text
from politune.data.validate import Issue, validate

__all__ = [
    "META_KEYS",
    "InstructionExample",
    "Issue",
    "LoadOptions",
    "LoadReport",
    "PreferencePair",
    "Prompt",
    "Record",
    "load",
    "load_report",
    "prompt_text",
    "read_table",
    "save",
    "summary_path",
    "to_dataset",
    "validate",
    "write_table",
]
