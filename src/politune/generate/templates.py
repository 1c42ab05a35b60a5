"""Prompt templates as files: what the teacher is asked at each stage, overridable per ideology.

A template file is plain text in sections::

    # comment lines before the first section are ignored
    ### system
    You label social-media posts ...
    ### user
    Post: "an example post"
    ### assistant
    {"relevance": 9, ...}          <- worked examples are ordinary user/assistant turns
    ### user
    Post: "{post}"                 <- the last section is the user turn with the post

Placeholders (replaced literally, so JSON braces in examples need no escaping): ``{post}``, ``{topic}``,
``{target}``, ``{target_description}``, ``{opposite}``, ``{opposite_description}``.

Lookup for stage ``S`` (``filter`` or ``write``) and target ``T``, first found wins: ``DIR/S.T.txt``,
``DIR/S.txt`` (``DIR`` = the user's ``templates`` folder, if given), then the built-in ``S.T.txt``, ``S.txt``.
A target's description is ``target.T.txt`` found the same way; ``left`` and ``right`` are built in, any other
target name needs its own ``target.NAME.txt``. The template hash recorded in every output row and in the cache
key is the SHA-256 of the template text together with the target and opposite descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from politune.errors import PolituneError
from politune.fsutil import safe_name, sha256_text

STAGES = ("filter", "write")
PLACEHOLDERS = ("post", "topic", "target", "target_description", "opposite", "opposite_description")
OPPOSITES = {"left": "right", "right": "left"}
_SECTION = re.compile(r"^###\s*(system|user|assistant)\s*$")


@dataclass(frozen=True)
class Template:
    """A parsed prompt template for one stage and target."""

    stage: str
    target: str
    source: str  # file path, or "builtin:NAME"
    turns: tuple[tuple[str, str], ...]  # (role, text)
    target_description: str
    opposite: str
    opposite_description: str

    @property
    def sha256(self) -> str:
        body = "\n".join(f"### {r}\n{t}" for r, t in self.turns)
        return sha256_text(
            f"{body}\n--target {self.target}: {self.target_description}\n"
            f"--opposite {self.opposite}: {self.opposite_description}"
        )

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    def render(self, post: str, topic: str = "") -> list[dict[str, str]]:
        """Chat messages for one post (``topic`` fills ``{topic}``; stage 1's topic for the write stage)."""
        values = {
            "post": post,
            "topic": topic or "unknown",
            "target": self.target,
            "target_description": self.target_description,
            "opposite": self.opposite,
            "opposite_description": self.opposite_description,
        }
        out = []
        for role, text in self.turns:
            # one pass over the text, so a post that itself contains "{target}" is never expanded
            text = re.sub(r"\{(" + "|".join(PLACEHOLDERS) + r")\}", lambda m: values[m.group(1)], text)
            out.append({"role": role, "content": text})
        return out


def parse_template(text: str, source: str) -> list[tuple[str, str]]:
    """Sections of a template file -> [(role, text)]; errors name the file and line."""
    turns: list[tuple[str, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _SECTION.match(line.strip())
        if m:
            turns.append((m.group(1), []))
            continue
        if not turns:
            if line.strip() and not line.lstrip().startswith("#"):
                raise PolituneError(
                    f"{source}:{lineno}: text before the first section; expected a line "
                    f"'### system', '### user' or '### assistant' (or a '#' comment)"
                )
            continue
        turns[-1][1].append(line)
    parsed = [(role, "\n".join(lines).strip()) for role, lines in turns]
    if not parsed:
        raise PolituneError(
            f"{source}: no sections; expected '### system' / '### user' / '### assistant' blocks"
        )
    if parsed[-1][0] != "user" or "{post}" not in parsed[-1][1]:
        raise PolituneError(f"{source}: the last section must be '### user' and contain {{post}}")
    for i, (role, body) in enumerate(parsed):
        if not body:
            raise PolituneError(f"{source}: section {i + 1} ('### {role}') is empty")
        if role == "system" and i != 0:
            raise PolituneError(f"{source}: section {i + 1}: '### system' may only be the first section")
    return parsed


def _find(name: str, template_dir: str | Path | None) -> tuple[str, str] | None:
    """(text, source) of the first ``name`` found in the user folder, then the built-ins."""
    if template_dir is not None:
        path = Path(template_dir) / name
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
    builtin = resources.files("politune.generate").joinpath("templates", name)
    if builtin.is_file():
        return builtin.read_text(encoding="utf-8"), f"builtin:{name}"
    return None


def target_description(target: str, template_dir: str | Path | None = None) -> str:
    safe_name(target, "target")
    found = _find(f"target.{target}.txt", template_dir)
    if found is None:
        where = f" in {template_dir} or" if template_dir else ""
        raise PolituneError(
            f"unknown target {target!r}: no target.{target}.txt{where} among the built-in targets "
            f"(left, right)"
        )
    text = " ".join(ln.strip() for ln in found[0].splitlines() if ln.strip() and not ln.startswith("#"))
    if not text:
        raise PolituneError(f"{found[1]}: empty target description")
    return text


def load_template(
    stage: str, target: str, template_dir: str | Path | None = None, opposite: str | None = None
) -> Template:
    """The template for ``stage`` and ``target`` (see the module doc for the lookup order)."""
    if stage not in STAGES:
        raise PolituneError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    safe_name(target, "target")
    if template_dir is not None and not Path(template_dir).is_dir():
        raise PolituneError(f"templates folder {str(template_dir)!r} does not exist")
    opposite = opposite or OPPOSITES.get(target)
    if opposite is None:
        raise PolituneError(
            f"target {target!r}: name its opposite (generate option 'opposite'), e.g. 'right'"
        )
    found = _find(f"{stage}.{target}.txt", template_dir) or _find(f"{stage}.txt", template_dir)
    if found is None:  # only reachable when the package data is missing
        raise PolituneError(f"no template for stage {stage!r}")
    text, source = found
    return Template(
        stage,
        target,
        source,
        tuple(parse_template(text, source)),
        target_description(target, template_dir),
        opposite,
        target_description(opposite, template_dir),
    )
