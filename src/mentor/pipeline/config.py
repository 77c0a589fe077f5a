"""The pipeline's config: one YAML file, typed sections (dataclasses) checked on load.

``load_config(path, overrides)`` returns the resolved mapping (what ``pipeline.yaml`` records)
after ``PipelineConfig.from_mapping`` has validated every key of every section -- an unknown key
is a ``PipelineError`` naming the file and the key, with a did-you-mean hint, in ``teacher:``
too. ``Pipeline`` works from the typed ``PipelineConfig``.

A config may start from another with ``extends: FILE`` (relative to the config's directory, else one
of the bundled ``configs/pipeline/`` files): the base's mapping (its own ``extends:`` applied first)
with this file's merged in, sections key by key -- except ``train.methods``, which a config that sets
it replaces whole (the RL methods of a run are one choice: a child can run fewer, in its own order).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mentor.analysis.report import ALIGNMENT_SOURCES
from mentor.config import check_keys, field_names, from_mapping
from mentor.generation.server import SERVER_COMMANDS
from mentor.rewards import PRESETS
from mentor.serve import INDEX_KINDS
from mentor.tasks import get_task
from mentor.teacher.factory import TeacherConfig, backends

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline" / "cpu.yaml"
BASE_STAGES = ("data", "teach", "vanilla", "sft")
TAIL_STAGES = ("eval", "report")
#: the stage that evaluates the teacher as a model (after ``teach``, while its endpoint is up),
#: and the method name its results go under (``eval/teacher/``, the report's teacher row)
TEACHER_STAGE = "teacher_eval"
TEACHER = "teacher"


class PipelineError(ValueError):
    pass


@dataclass
class DataSection:
    dataset: str = "synthetic"
    split: str = "train"
    n: int | None = None
    question_field: str | None = None
    answer_field: str | None = None
    task: str | None = None


@dataclass
class TrainSection:
    config: str | None = None  # training config (mentor.train.config): GRPOConfig / SFTConfig / LoraConfig fields
    sft: dict[str, Any] = field(default_factory=dict)  # overrides of the SFT stage
    rl: dict[str, Any] = field(default_factory=dict)  # overrides of every RL stage
    methods: dict[str, str] | None = None  # RL method name -> reward preset
    keep_checkpoints: bool = False

    @property
    def rl_methods(self) -> dict[str, str]:
        return dict(self.methods or {"sparse": "sparse", "mentor": "mentor"})


@dataclass
class RetrieverSection:
    """``eval.retriever``: the retrieval server the evaluation stages start (``mentor serve
    retriever``) for the QA benchmarks that carry no passages of their own, and stop afterwards.
    Paths are checked when the stage starts, not when the config is read."""

    corpus: str | None = None  # FlashRAG JSONL ({"id", "contents"}), e.g. wiki18_100w.jsonl
    index: str = "dense"  # dense | bm25
    model: str | None = None  # dense: sentence-transformers model; None: $MENTOR_EMBEDDING_MODEL or bundled MiniLM
    faiss_index: str | None = None  # dense: a prebuilt faiss index over `corpus` (FlashRAG's e5_Flat.index)
    index_dir: str | None = None  # where a built index is saved / reused (default: RUN_DIR/retriever)
    query_prefix: str | None = None  # None: the model's default ("query: " for e5)
    passage_prefix: str | None = None  # None: the model's default ("passage: " for e5)
    startup_timeout: float = 3600.0  # seconds to read the corpus and load (or build) the index

    def check(self, where: str) -> None:
        if not self.corpus or not isinstance(self.corpus, str):
            raise PipelineError(f"{where}: eval.retriever.corpus: the corpus file (FlashRAG JSONL) is required")
        if self.index not in INDEX_KINDS:
            raise PipelineError(f"{where}: eval.retriever.index: expected one of {', '.join(INDEX_KINDS)}, got {self.index!r}")
        if self.faiss_index and self.index != "dense":
            raise PipelineError(f"{where}: eval.retriever.faiss_index: a prebuilt faiss index needs index: dense")

    def args(self, index_dir: Path) -> list[str]:
        """``mentor serve retriever`` arguments (``index_dir`` when none is configured)."""
        out = ["serve", "retriever", "--corpus", str(self.corpus), "--index", self.index,
               "--index-dir", str(self.index_dir or index_dir)]
        for flag, value in (("--model", self.model), ("--faiss-index", self.faiss_index),
                            ("--query-prefix", self.query_prefix), ("--passage-prefix", self.passage_prefix)):
            if value is not None:
                out += [flag, str(value)]
        return out

    @property
    def label(self) -> str:
        """What evaluation results record as their ``retriever`` (stable across restarts, so that an
        interrupted evaluation resumes item by item)."""
        parts = [self.index, self.model or "default-model" if self.index == "dense" else None,
                 Path(str(self.corpus)).name, Path(self.faiss_index).name if self.faiss_index else None]
        return "server:" + ":".join(p for p in parts if p)


@dataclass
class EvalSection:
    in_domain: list[str] | None = None
    out_of_domain: list[str] | None = None
    limit: int | None = None
    max_new_tokens: int = 256
    max_turns: int = 4
    batch_size: int = 8
    tool_effect: bool = True  # also evaluate vanilla and the teacher without tools (Fig. 1)
    #: decoding: None = each model's recommended sampling (its generation_config.json), 0 = greedy
    temperature: float | None = None
    top_p: float | None = None
    #: the math task's scorer (``mentor.tasks.math.MathTask.scorers``): math_verify | exact
    math_scorer: str = "math_verify"
    server: str | None = None  # vllm | transformers | a command template with {model} and {port}
    #: in-process generation without a server: transformers | llama_cpp (weights exported to bf16 GGUF)
    backend: str = "transformers"
    server_startup_timeout: float = 900.0
    #: the retriever server the evaluation stages start and stop (``RetrieverSection``)
    retriever: RetrieverSection | None = None
    #: evaluate the teacher as a method too (stage ``teacher_eval``): Table 2's teacher row, Fig. 1
    teacher: bool = True
    #: the alignment score's teacher distribution P: ``benchmark`` (the teacher's tool calls on the
    #: in-domain evaluation benchmarks, as the paper) or ``references`` (its training references)
    alignment_source: str = "benchmark"

    @property
    def benchmarks(self) -> list[tuple[str, str]]:
        """``(benchmark, "in_domain" | "out_of_domain")`` in evaluation order; an unset list is the
        synthetic family's split, an empty one none."""
        ind = ["synthetic:test"] if self.in_domain is None else self.in_domain
        ood = ["synthetic:ood"] if self.out_of_domain is None else self.out_of_domain
        return [(b, "in_domain") for b in ind] + [(b, "out_of_domain") for b in ood]

    def decoding(self, seed: int) -> dict[str, Any]:
        """``evaluate``'s decoding and scoring keywords."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": int(self.max_new_tokens),
                "seed": seed, "scorers": {"math": self.math_scorer}}


@dataclass
class PipelineConfig:
    name: str | None = None
    seed: int = 0
    student: str | None = None
    rl_init: str = "sft"  # sft | base
    data: DataSection = field(default_factory=DataSection)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    source: str | None = None

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], where: str | os.PathLike = "pipeline config") -> PipelineConfig:
        """Validate every key of every section (``PipelineError`` naming ``where`` and the key)."""
        where = str(where)
        top = {k: v for k, v in cfg.items() if k != "_source"}
        check_keys(top, [f for f in field_names(cls) if f != "source"], where, PipelineError)

        def section(name: str, typ: type) -> Any:
            return from_mapping(typ, top.get(name), where, PipelineError, prefix=f"{name}.")

        teacher = top.get("teacher") or {"backend": "program"}
        evals = dict(top.get("eval") or {}) if isinstance(top.get("eval"), Mapping) else top.get("eval")
        if isinstance(evals, dict) and evals.get("retriever") is not None:
            evals["retriever"] = from_mapping(RetrieverSection, evals["retriever"], where, PipelineError,
                                              prefix="eval.retriever.")
        if not isinstance(teacher, Mapping):
            raise PipelineError(f"{where}: 'teacher' must be a mapping")
        out = cls(
            name=top.get("name"), seed=int(top.get("seed", 0) or 0), student=top.get("student"),
            rl_init=top.get("rl_init", "sft"), data=section("data", DataSection), train=section("train", TrainSection),
            eval=from_mapping(EvalSection, evals, where, PipelineError, prefix="eval."), source=cfg.get("_source"),
            teacher=TeacherConfig.from_mapping(teacher, where, PipelineError, "teacher.", seed=int(top.get("seed", 0) or 0)),
        )
        out.check(where)
        return out

    def check(self, where: str) -> None:
        if self.rl_init not in ("sft", "base"):
            raise PipelineError(f"{where}: rl_init must be 'sft' or 'base'")
        if self.teacher.backend not in backends():
            raise PipelineError(f"{where}: teacher.backend: unknown backend {self.teacher.backend!r}; choose one of {', '.join(backends())}")
        try:
            get_task("math").with_scorer(self.eval.math_scorer)
        except ValueError as e:
            raise PipelineError(f"{where}: eval.math_scorer: {e}") from None
        if self.eval.backend not in ("transformers", "llama_cpp"):
            raise PipelineError(f"{where}: eval.backend: expected transformers or llama_cpp, got {self.eval.backend!r}")
        if self.eval.retriever is not None:
            self.eval.retriever.check(where)
        server = self.eval.server
        if server is not None and (not isinstance(server, str) or (server not in SERVER_COMMANDS and not ("{model}" in server and "{port}" in server))):
            raise PipelineError(
                f"{where}: eval.server: expected one of {', '.join(SERVER_COMMANDS)} or a command template with {{model}} and {{port}}"
            )
        if self.eval.alignment_source not in ALIGNMENT_SOURCES:
            raise PipelineError(f"{where}: eval.alignment_source: expected one of {', '.join(ALIGNMENT_SOURCES)}, "
                                f"not {self.eval.alignment_source!r}")
        if self.eval.alignment_source == "benchmark" and not self.eval.teacher:
            raise PipelineError(f"{where}: eval.alignment_source: 'benchmark' needs the teacher's evaluation (eval.teacher: true); "
                                "set eval.alignment_source: references to use the training references instead")
        reserved = ("vanilla", "sft", TEACHER, TEACHER_STAGE)
        for name, preset in (self.train.methods or {}).items():
            if preset not in PRESETS:
                raise PipelineError(f"{where}: train.methods.{name}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            if name in reserved:
                raise PipelineError(f"{where}: train.methods.{name}: {', '.join(map(repr, reserved))} are reserved method names")

    @property
    def methods(self) -> list[str]:
        """The student methods (trained and evaluated)."""
        return ["vanilla", "sft", *self.train.rl_methods]

    @property
    def reported(self) -> list[str]:
        """Every evaluated method, in the report's order: the teacher (when evaluated) first."""
        return [TEACHER, *self.methods] if self.eval.teacher else self.methods

    @property
    def stages(self) -> list[str]:
        base = list(BASE_STAGES)
        if self.eval.teacher:
            base.insert(base.index("teach") + 1, TEACHER_STAGE)
        return [*base, *self.train.rl_methods, *TAIL_STAGES]


#: the key naming the config a pipeline config starts from, and the keys a child replaces whole
EXTENDS = "extends"
REPLACED = (("train", "methods"),)


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The resolved config mapping of ``path`` (default: the bundled CPU demo; its ``extends:``
    chain applied) with ``overrides`` merged in, validated (``PipelineError`` for a bad file or
    key); ``_source`` names the file."""
    path = Path(path) if path else DEFAULT_CONFIG
    cfg = _deep_merge(read_config(path), overrides or {})
    cfg["_source"] = str(path)
    PipelineConfig.from_mapping(cfg, path)
    return cfg


def read_config(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of the pipeline YAML ``path`` with its ``extends:`` chain applied (not validated:
    ``load_config`` does that once, on the result)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: pipeline config not found")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise PipelineError(f"{path}: expected a mapping at the top level")
    base = cfg.pop(EXTENDS, None)
    if base is None:
        return cfg
    if not isinstance(base, str) or not base:
        raise PipelineError(f"{path}: {EXTENDS}: expected the file name of the config this one starts from")
    found = next((p for p in (path.parent / base, DEFAULT_CONFIG.parent / base) if p.is_file()), None)
    if found is None:
        raise PipelineError(f"{path}: {EXTENDS}: {base} not found (next to {path.name}, nor in {DEFAULT_CONFIG.parent})")
    chain = (*_chain, path.resolve())
    if found.resolve() in chain:
        loop = " -> ".join(p.name for p in (*chain, found.resolve()))
        raise PipelineError(f"{path}: {EXTENDS}: {base} closes a loop ({loop})")
    out = _deep_merge(read_config(found, chain), cfg)
    for section, key in REPLACED:
        if isinstance(cfg.get(section), Mapping) and key in cfg[section] and isinstance(out.get(section), dict):
            out[section][key] = copy.deepcopy(cfg[section][key])
    return out


def _deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(a))
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def rl_methods(cfg: Mapping[str, Any]) -> dict[str, str]:
    return PipelineConfig.from_mapping(cfg).train.rl_methods


def methods(cfg: Mapping[str, Any]) -> list[str]:
    return PipelineConfig.from_mapping(cfg).methods


def all_stages(cfg: Mapping[str, Any]) -> list[str]:
    return PipelineConfig.from_mapping(cfg).stages
