"""generate pillar: the teacher pipeline that turns a corpus of posts into instruction and preference data.

    from politune.generate import GenerateConfig, run_generate
    result = run_generate(GenerateConfig(corpus="builtin:posts", teacher="smollm2-135m", target="left",
                                         limit=20, out="runs/gen-left"))
    result.preference   # list[PreferencePair];  result.instruction: list[InstructionExample]

Stage 1 (filter) rates each post as strict JSON, stage 2 (write) writes instruction / positive / negative;
every teacher answer is cached in an append-only log so runs resume after kill -9. See docs/generate.md.
"""

from politune.generate.config import GenerateConfig
from politune.generate.corpus import BUILTIN_POSTS, Corpus, Post, builtin_posts, load_posts
from politune.generate.outputs import GenerateResult, filter_metrics
from politune.generate.parsing import Rating, Triplet, check_triplet, parse_rating, parse_triplet
from politune.generate.pipeline import dry_run, run_generate
from politune.generate.teachers import HTTPTeacher, LocalTeacher, Teacher
from politune.generate.templates import Template, load_template

__all__ = [
    "BUILTIN_POSTS",
    "Corpus",
    "GenerateConfig",
    "GenerateResult",
    "HTTPTeacher",
    "LocalTeacher",
    "Post",
    "Rating",
    "Teacher",
    "Template",
    "Triplet",
    "builtin_posts",
    "check_triplet",
    "dry_run",
    "filter_metrics",
    "load_posts",
    "load_template",
    "parse_rating",
    "parse_triplet",
    "run_generate",
]
