"""``politune generate`` settings: corpus, target ideology, teacher, filter and write thresholds, stance check
(defaults documented in docs/generate.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from politune.config import Config

TARGET_SIGN = {"left": -1, "right": 1}  # where the target sits on the axes (politune's sign convention)


class ApiConfig(Config):
    """OpenAI-compatible teacher server (used when ``base_url`` is set)."""

    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1; unset: a local transformers teacher
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key (never put keys in configs)
    concurrency: int = Field(8, ge=1)
    rate_limit: float | None = Field(None, gt=0)  # requests/s
    max_retries: int = Field(4, ge=0)
    timeout: float = Field(120.0, gt=0)
    cost_per_1k_prompt: float | None = None
    cost_per_1k_completion: float | None = None


class FilterConfig(Config):
    enabled: bool = True  # False: keep every post (a pre-filtered corpus)
    min_relevance: float = Field(6.0, ge=0, le=10)
    min_slant: float | None = Field(None, ge=-1, le=1)  # slant toward the target: -1 against .. 1 for
    max_slant: float | None = Field(None, ge=-1, le=1)
    attempts: int = Field(2, ge=1)
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    retry_temperature: float = Field(0.7, ge=0)  # attempts after the first sample at least this hot
    json_mode: bool = False  # HTTP teachers: ask for response_format=json_object


class WriteConfig(Config):
    enabled: bool = True  # False: stop after the filter (rate a corpus, measure the filter)
    attempts: int = Field(3, ge=1)
    max_tokens: int = Field(320, ge=1)
    temperature: float = Field(0.7, ge=0)
    retry_temperature: float = Field(0.7, ge=0)
    min_chars: int = Field(20, ge=1)  # per answer
    max_chars: int = Field(2000, ge=1)
    min_instruction_chars: int = Field(10, ge=1)
    max_instruction_chars: int = Field(600, ge=1)
    max_similarity: float = Field(
        0.9, gt=0, le=1
    )  # positive vs negative (difflib ratio) above this: rejected


class StanceCheckConfig(Config):
    enabled: Literal["auto"] | bool = "auto"  # auto: politune's offline stance scorer when it is installed
    axis: Literal["economic", "social"] = "economic"
    min_margin: float = 0.0  # sign * (lean(positive) - lean(negative)) must exceed this
    sign: Literal[-1, 1] | None = None  # where the target sits on the axis; default from target (left -1)


class GenerateConfig(Config):
    """``politune generate`` settings (defaults documented in docs/generate.md)."""

    corpus: str = "builtin:posts"
    text_column: str = "text"
    id_column: str = "id"
    split: str | None = None
    limit: int | None = Field(None, ge=1)
    target: str = "left"
    opposite: str | None = None  # default: the other built-in side
    teacher: str = "smollm2-135m"  # local model reference, or the model name on the server (api.base_url)
    api: ApiConfig = ApiConfig()
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = Field(8, ge=1)  # local teacher: conversations per generate call
    templates: str | None = None  # folder with filter[.TARGET].txt / write[.TARGET].txt / target.NAME.txt
    seed: int = 0
    out: str = "generated"
    filter: FilterConfig = FilterConfig()
    write: WriteConfig = WriteConfig()
    stance: StanceCheckConfig = StanceCheckConfig()
