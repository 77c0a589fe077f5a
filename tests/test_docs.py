"""Keep the docs true where a test can: config values, tool descriptions, verbatim outputs, links.

Conventions for README.md and docs/*.md (checked here, in well under a second):

- **Config quotes.** A config value is quoted as ONE inline code span holding the file, a space,
  the dotted key and the value: `` `configs/cpu.yaml grpo.learning_rate: 1.0e-4` ``. The file is
  relative to the repository root (``configs/`` is ``src/mentor/configs/``), the dotted key walks
  into the YAML's sections (``train.rl.max_steps``), and the value is YAML (``auto``, ``0.0``,
  ``[a, b]``); it must equal the file's value after YAML parsing (numbers compare as numbers, so
  ``1e-4`` matches ``1.0e-4``). A span that starts like a quote (``configs/....yaml`` and a space)
  but does not parse fails too.
- **Tools.** The tool table between ``<!-- tools:begin -->`` and ``<!-- tools:end -->`` is generated
  from ``mentor.tools`` (``python tests/test_docs.py`` prints it); a compact signature line
  (``add(firstNumber: number, secondNumber: number) - Add two numbers together``) anywhere must be
  the registry's; "N math tools" / "N tool schemas" must say how many math tools there are.
- **Verbatim outputs.** A block between ``<!-- verbatim: PATH -->`` and ``<!-- /verbatim -->`` is
  the file at PATH, byte for byte (script output such as the studies' tables).
- **Links.** Every relative link target ``[text](path#anchor)`` exists, and so does its anchor
  when it points into a Markdown file (GitHub's heading slugs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mentor.tools import ALL_TOOLS, MATH_TOOLS

ROOT = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _strip_fences(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept): quotes and links live in prose."""
    out, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            out.append("")
            continue
        out.append("" if fence else line)
    return "\n".join(out)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


# ----------------------------------------------------------------------------- config quotes

#: a code span that starts like a config quote: a YAML path under configs/ and a space
QUOTE_START = re.compile(r"`((?:src/mentor/)?configs/[\w./-]+\.ya?ml) ([^`]*)`")
#: the rest of a well-formed quote: dotted.key: value
KEY_VALUE = re.compile(r"^([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*): (\S.*)$")
_MISSING = object()


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _same(quoted: Any, actual: Any) -> bool:
    if quoted == actual and type(quoted) is type(actual):
        return True
    numeric = (int, float)
    if isinstance(actual, numeric) and not isinstance(actual, bool) and not isinstance(quoted, bool):
        try:
            return float(quoted) == float(actual)
        except (TypeError, ValueError):
            return False
    return False


def config_quote_errors(text: str, source: str = "<doc>", root: Path = ROOT) -> tuple[list[str], int]:
    """(errors, number of quotes checked) for the config quotes in ``text``."""
    errors, checked, cache = [], 0, {}
    prose = _strip_fences(text)
    for m in QUOTE_START.finditer(prose):
        where = f"{source}:{_line(prose, m.start())}"
        path, rest = m.group(1), m.group(2)
        kv = KEY_VALUE.match(rest)
        if not kv:
            errors.append(f"{where}: `{m.group(0)[1:-1]}` is not a config quote (`FILE dotted.key: value`)")
            continue
        key, raw = kv.groups()
        file = root / path
        if not file.is_file():
            errors.append(f"{where}: {path} does not exist")
            continue
        if file not in cache:
            cache[file] = yaml.safe_load(file.read_text(encoding="utf-8"))
        actual = _lookup(cache[file], key)
        checked += 1
        if actual is _MISSING:
            errors.append(f"{where}: {path} has no key {key!r}")
            continue
        try:
            quoted = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            errors.append(f"{where}: the value of {key} ({raw!r}) is not YAML: {e}")
            continue
        if not _same(quoted, actual):
            errors.append(f"{where}: {path} {key} is {actual!r}, the doc says {raw}")
    return errors, checked


def test_the_config_quote_checker_fails_on_a_bad_doc():
    good = "The rate is `configs/cpu.yaml grpo.epsilon: 0.2` and `configs/pipeline/cpu.yaml train.rl.max_steps: 8`."
    assert config_quote_errors(good) == ([], 2)
    wrong = "GRPO uses `configs/cpu.yaml grpo.epsilon: 0.3` here."
    errors, _ = config_quote_errors(wrong, "bad.md")
    assert len(errors) == 1 and "bad.md:1" in errors[0] and "grpo.epsilon is 0.2" in errors[0]
    assert config_quote_errors("`configs/cpu.yaml grpo.no_such_key: 1`")[0][0].endswith("has no key 'grpo.no_such_key'")
    assert "does not exist" in config_quote_errors("`configs/nope.yaml seed: 1`")[0][0]
    assert "is not a config quote" in config_quote_errors("`configs/cpu.yaml grpo.epsilon = 0.2`")[0][0]
    # types matter: a string is not a bool, a bool is not a number; numbers compare as numbers
    assert config_quote_errors("`configs/cpu.yaml lora_grpo: 'true'`")[0]
    assert config_quote_errors("`configs/cpu.yaml grpo.logging_steps: true`")[0]
    assert config_quote_errors("`configs/cpu.yaml grpo.learning_rate: 1e-4`") == ([], 1)
    # fenced code is not checked (commands and captured output are not quotes)
    assert config_quote_errors("```\n`configs/cpu.yaml grpo.epsilon: 9`\n```") == ([], 0)


def test_config_values_quoted_in_the_docs_are_the_files():
    errors, checked = [], 0
    for doc in doc_files():
        e, n = config_quote_errors(doc.read_text(encoding="utf-8"), str(doc.relative_to(ROOT)))
        errors += e
        checked += n
    assert not errors, "\n".join(errors)
    assert checked >= 20  # the docs use the convention (README, training, evaluation, pipeline, measurements)


# ------------------------------------------------------------------------------------- tools

TOOLS_BEGIN, TOOLS_END = "<!-- tools:begin -->", "<!-- tools:end -->"


def _param_text(p) -> str:
    kind = f"{p.items}[]" if p.type == "array" else p.type
    optional = f", optional, default {p.default}" if not p.required else ""
    return f"`{p.name}` ({kind}{optional}): {p.description}"


def tool_table() -> str:
    """The docs' tool table, from the registry (names, descriptions and parameters verbatim)."""
    rows = ["| tool | set | description | parameters |", "|---|---|---|---|"]
    for spec in ALL_TOOLS.values():
        toolset = "math" if spec in MATH_TOOLS else "search"
        params = "; ".join(_param_text(p) for p in spec.parameters)
        rows.append(f"| `{spec.name}` | {toolset} | {spec.description} | {params} |")
    return "\n".join(rows)


def compact_line(spec) -> str:
    """A tool as the compact prompt style lists it (mentor.prompts' ``qwen2.5-compact`` template)."""
    params = ", ".join(
        f"{p.name}: {(p.items + '[]') if p.type == 'array' else p.type}{'' if p.required else ' (optional)'}"
        for p in spec.parameters
    )
    return f"{spec.name}({params}) - {spec.description}"


COMPACT = re.compile(r"\b(" + "|".join(map(re.escape, ALL_TOOLS)) + r")\(([^()`]*:[^()`]*)\) - ([^`\n]+)")
COUNT = re.compile(r"\b(\d+) (?:math tools|calculator tools|paper tools|math tool schemas|tool schemas)\b")


def tool_errors(text: str, source: str = "<doc>") -> list[str]:
    errors = []
    if TOOLS_BEGIN in text:
        block = text.split(TOOLS_BEGIN, 1)[1].split(TOOLS_END, 1)[0].strip()
        if block != tool_table():
            errors.append(f"{source}: the tool table differs from mentor.tools (print it: python tests/test_docs.py)")
    flat = re.sub(r"\s*\n\s*", " ", text)  # a signature may wrap across lines
    for m in COMPACT.finditer(flat):
        want = compact_line(ALL_TOOLS[m.group(1)])
        if m.group(0).rstrip() != want:
            errors.append(f"{source}: {m.group(0)!r} is not the registry's {want!r}")
    for m in COUNT.finditer(flat):
        if int(m.group(1)) != len(MATH_TOOLS):
            errors.append(f"{source}: {m.group(0)!r}, but there are {len(MATH_TOOLS)} math tools")
    return errors


def test_the_tool_checker_fails_on_a_bad_doc():
    assert tool_errors(f"{TOOLS_BEGIN}\n{tool_table()}\n{TOOLS_END}") == []
    assert tool_errors("`add(firstNumber: number, secondNumber: number) - Add two numbers together`") == []
    assert tool_errors("`add(firstNumber: number, secondNumber: number) - Add two numbers`")
    assert tool_errors("`add(a: number, b: number) - Add two numbers together`")
    assert tool_errors("the 11 math tools") and not tool_errors("the 12 math tools")
    table = tool_table().replace("Number of results to return", "How many results")
    assert tool_errors(f"{TOOLS_BEGIN}\n{table}\n{TOOLS_END}")


def test_tool_descriptions_in_the_docs_are_the_registrys():
    texts = {d: d.read_text(encoding="utf-8") for d in doc_files()}
    assert any(TOOLS_BEGIN in t for t in texts.values()), "no doc carries the generated tool table"
    errors = [e for d, t in texts.items() for e in tool_errors(t, str(d.relative_to(ROOT)))]
    assert not errors, "\n".join(errors)


def test_the_search_tool_is_the_papers():
    # SPEC.md, Tables 11-12: the wording of the paper's schema
    search = ALL_TOOLS["wikipedia_search"]
    assert search.description == "Search Wikipedia for a given query."
    assert [(p.name, p.description) for p in search.parameters] == [
        ("query", "Query to search for."), ("top_n", "Number of results to return. The default value is 5.")]


# --------------------------------------------------------------------------- verbatim blocks

VERBATIM = re.compile(r"<!-- verbatim: (\S+) -->\n(.*?)\n<!-- /verbatim -->", re.S)


def test_verbatim_blocks_are_the_files_byte_for_byte():
    found = 0
    for doc in doc_files():
        for m in VERBATIM.finditer(doc.read_text(encoding="utf-8")):
            found += 1
            assert m.group(2) == (ROOT / m.group(1)).read_text(encoding="utf-8").strip("\n"), (doc.name, m.group(1))
    assert found >= 2  # the two studies (docs/studies.md)


# ------------------------------------------------------------------------------------ links

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    seen: dict[str, int] = {}
    out = set()
    for line in _strip_fences(markdown).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def link_errors(text: str, base: Path, source: str) -> list[str]:
    errors = []
    prose = _strip_fences(text)
    for m in LINK.finditer(prose):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:, file:
            continue
        path, _, anchor = target.partition("#")
        file = (base / path).resolve() if path else None
        where = f"{source}:{_line(prose, m.start())}"
        if file is not None and not file.exists():
            errors.append(f"{where}: {path} does not exist")
            continue
        md = file if file is not None else None
        if anchor and (md is None or md.suffix == ".md"):
            heads = slugs(md.read_text(encoding="utf-8")) if md is not None else slugs(text)
            if anchor not in heads:
                errors.append(f"{where}: no heading #{anchor} in {path or source}")
    return errors


def test_the_link_checker_fails_on_a_bad_doc(tmp_path):
    (tmp_path / "a.md").write_text("# The paper's schedule (Table 5, Eq. 3)\n## Try `mentor chat`\n", encoding="utf-8")
    good = "[x](a.md) [y](a.md#the-papers-schedule-table-5-eq-3) [z](a.md#try-mentor-chat) [w](https://x.org/n)"
    assert link_errors(good, tmp_path, "t.md") == []
    assert link_errors("[x](b.md)", tmp_path, "t.md") == ["t.md:1: b.md does not exist"]
    assert link_errors("[x](a.md#nope)", tmp_path, "t.md")
    assert link_errors("# Here\n[x](#here) [y](#there)", tmp_path, "t.md") == ["t.md:2: no heading #there in t.md"]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.name)
def test_relative_links_exist(doc):
    errors = link_errors(doc.read_text(encoding="utf-8"), doc.parent, str(doc.relative_to(ROOT)))
    assert not errors, "\n".join(errors)


if __name__ == "__main__":  # print the generated tool table (docs/tools.md)
    print(TOOLS_BEGIN)
    print(tool_table())
    print(TOOLS_END)
