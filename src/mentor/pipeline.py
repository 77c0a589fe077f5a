"""``mentor run``: the whole MENTOR pipeline into one run directory.

data -> teacher references (filtered) -> Vanilla evaluation -> SFT -> RL methods (Sparse,
MENTOR, ... from the SFT warm start or the base student) -> evaluation of every method in- and
out-of-domain -> report (tables, plots) and ``summary.json``.

Every stage reads and writes plain files in the run directory and is skipped when its
outputs already exist, so re-running a killed run finishes it without redoing completed
stages (training resumes from its last checkpoint; evaluation from the last finished
benchmark file). ``--stages`` runs a subset.

Run directory::

    pipeline.yaml          the resolved config
    run.json               seed, versions, per-stage timings
    stages/<stage>.json    completion marker of each stage (with its timing)
    data/questions.jsonl   the training questions
    references.jsonl       teacher references (+ .rejected.jsonl, .summary.json)
    models/<method>/       training output (checkpoints, metrics.jsonl, final/)
    eval/<method>/*.json   evaluation results (one per benchmark)
    report.md, report.html, plots/*.png, summary.json
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer

REPO_ROOT = Path(__file__).resolve().parents[2]  # the repository, for an editable install
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "pipeline" / "cpu.yaml"

BASE_STAGES = ("data", "teach", "vanilla", "sft")
TAIL_STAGES = ("eval", "report")
SUMMARY_KEYS = ("in_domain_accuracy", "out_of_domain_accuracy", "invalid_call_rate", "tool_usage_rate", "alignment_score")


class PipelineError(ValueError):
    pass


# ------------------------------------------------------------------ config


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    import yaml

    path = Path(path) if path else DEFAULT_CONFIG
    if not path.exists():
        raise PipelineError(f"{path}: pipeline config not found")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise PipelineError(f"{path}: expected a mapping at the top level")
    cfg = _deep_merge(cfg, overrides or {})
    cfg["_source"] = str(path)
    _validate(cfg, path)
    return cfg


_KNOWN = {
    "": {"name", "seed", "student", "rl_init", "data", "teacher", "train", "eval", "_source"},
    "data": {"dataset", "split", "n", "question_field", "answer_field", "task"},
    "train": {"config", "sft", "rl", "methods", "keep_checkpoints"},
    "eval": {"in_domain", "out_of_domain", "limit", "max_new_tokens", "max_turns", "batch_size", "tool_effect", "temperature",
             "server", "server_startup_timeout"},
}


def _validate(cfg: Mapping[str, Any], path: Path) -> None:
    import difflib

    from mentor.rewards import PRESETS

    for section, known in _KNOWN.items():
        block = cfg if not section else cfg.get(section) or {}
        if not isinstance(block, Mapping):
            raise PipelineError(f"{path}: {section!r} must be a mapping")
        for key in block:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                where = f"{section}.{key}" if section else key
                raise PipelineError(f"{path}: unknown key {where!r}{hint}")
    if cfg.get("rl_init", "sft") not in ("sft", "base"):
        raise PipelineError(f"{path}: rl_init must be 'sft' or 'base'")
    server = (cfg.get("eval") or {}).get("server")
    if server is not None:
        from mentor.teacher.local_server import SERVER_COMMANDS

        if not isinstance(server, str) or (server not in SERVER_COMMANDS and not ("{model}" in server and "{port}" in server)):
            raise PipelineError(
                f"{path}: eval.server: expected one of {', '.join(SERVER_COMMANDS)} or a command template with {{model}} and {{port}}"
            )
    methods = (cfg.get("train") or {}).get("methods") or {}
    for name, preset in methods.items():
        if preset not in PRESETS:
            raise PipelineError(f"{path}: train.methods.{name}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if name in ("vanilla", "sft"):
            raise PipelineError(f"{path}: train.methods.{name}: 'vanilla' and 'sft' are reserved method names")


def _deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(a))
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def rl_methods(cfg: Mapping[str, Any]) -> dict[str, str]:
    return dict((cfg.get("train") or {}).get("methods") or {"sparse": "sparse", "mentor": "mentor"})


def methods(cfg: Mapping[str, Any]) -> list[str]:
    return ["vanilla", "sft", *rl_methods(cfg)]


def all_stages(cfg: Mapping[str, Any]) -> list[str]:
    return [*BASE_STAGES, *rl_methods(cfg), *TAIL_STAGES]


# ------------------------------------------------------------------ the run


class Pipeline:
    def __init__(self, cfg: Mapping[str, Any], out: str | os.PathLike, progress: bool = True):
        self.cfg = dict(cfg)
        self.out = Path(out)
        self.progress = progress
        from rich.console import Console

        self.console = Console(stderr=True)
        self._generators: dict[str, Any] = {}

    # paths
    @property
    def questions_path(self) -> Path:
        return self.out / "data" / "questions.jsonl"

    @property
    def references_path(self) -> Path:
        return self.out / "references.jsonl"

    def model_dir(self, method: str) -> Path:
        return self.out / "models" / method

    def model_for(self, method: str) -> str:
        if method == "vanilla":
            return str(self.cfg.get("student") or "smollm2-135m")
        return str(self.model_dir(method) / "final")

    def eval_dir(self, method: str) -> Path:
        return self.out / "eval" / method

    def marker(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def done(self, stage: str) -> bool:
        return self.marker(stage).exists()

    # driver
    def run(self, stages: Sequence[str] | None = None) -> dict[str, Any]:
        from mentor.io import write_json

        order = all_stages(self.cfg)
        chosen = list(stages) if stages else order
        unknown = [s for s in chosen if s not in order]
        if unknown:
            raise PipelineError(f"unknown stage(s) {unknown}; stages of this config: {', '.join(order)}")
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_config()
        meta = self._update_meta({})
        t_all = time.perf_counter()
        for stage in [s for s in order if s in chosen]:
            if self.done(stage):
                self.console.print(f"[dim]\\[mentor run] {stage}: done earlier, skipped[/dim]")
                continue
            self.console.rule(f"[bold]stage {stage}")
            t0 = time.perf_counter()
            info = self._run_stage(stage) or {}
            seconds = time.perf_counter() - t0
            write_json(self.marker(stage), {"stage": stage, "seconds": round(seconds, 2), **info})
            meta = self._update_meta({stage: {"seconds": round(seconds, 2), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}})
            self.console.print(f"[green]\\[mentor run] {stage}: done in {seconds:.1f}s[/green]")
        return self._update_meta({}, last_invocation_seconds=round(time.perf_counter() - t_all, 2))

    def _update_meta(self, stages: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        """Read-modify-write of ``run.json`` under a file lock, so that several ``run``s on one
        directory (different stages, e.g. the study's parallel RL runs) keep each other's entries."""
        from filelock import FileLock

        from mentor.io import run_metadata, write_json

        run_file = self.out / "run.json"
        with FileLock(str(run_file) + ".lock"):
            meta = json.loads(run_file.read_text()) if run_file.exists() else run_metadata(self.cfg, self.cfg.get("seed"))
            meta.setdefault("stages", {}).update(stages)
            meta.update(fields)
            write_json(run_file, meta)
        return meta

    def _write_config(self) -> None:
        import yaml

        path = self.out / "pipeline.yaml"
        clean = {k: v for k, v in self.cfg.items() if not k.startswith("_")}
        text = yaml.safe_dump(clean, sort_keys=False)
        if path.exists() and path.read_text() != text:
            raise PipelineError(
                f"{self.out} holds a run with a different config ({path}); "
                "use another --output-dir, or delete the directory to start over"
            )
        path.write_text(text)

    def _run_stage(self, stage: str) -> dict[str, Any] | None:
        if stage == "data":
            return self.stage_data()
        if stage == "teach":
            return self.stage_teach()
        if stage == "vanilla":
            return self.stage_eval(["vanilla"])
        if stage == "sft":
            return self.stage_sft()
        if stage in rl_methods(self.cfg):
            return self.stage_rl(stage, rl_methods(self.cfg)[stage])
        if stage == "eval":
            return self.stage_eval([m for m in methods(self.cfg) if m != "vanilla"])
        if stage == "report":
            return self.stage_report()
        raise PipelineError(f"unknown stage {stage!r}")  # pragma: no cover

    # ---------------------------------------------------------------- stages
    def stage_data(self) -> dict[str, Any]:
        from dataclasses import asdict

        from mentor.data import load_questions
        from mentor.io import write_json

        d = self.cfg.get("data") or {}
        qs = load_questions(
            d.get("dataset", "synthetic"),
            split=d.get("split", "train"),
            n=d.get("n"),
            seed=int(self.cfg.get("seed", 0)),
            question_field=d.get("question_field"),
            answer_field=d.get("answer_field"),
            task=d.get("task"),
        )
        self.questions_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.questions_path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for q in qs:
                f.write(json.dumps(asdict(q), default=str) + "\n")
        tmp.replace(self.questions_path)
        write_json(self.out / "data" / "meta.json", {"source": d.get("dataset", "synthetic"), "n": len(qs)})
        return {"questions": len(qs)}

    def _questions(self):
        from mentor.data.datasets import Question
        from mentor.io import read_jsonl

        return [Question(**obj) for _, obj in read_jsonl(self.questions_path)]

    def stage_teach(self) -> dict[str, Any]:
        from mentor.teacher import generate_references
        from mentor.teacher.factory import make_teacher

        t = dict(self.cfg.get("teacher") or {"backend": "program"})
        teacher = make_teacher(**t, seed=int(self.cfg.get("seed", 0)))
        summary = generate_references(
            self._questions(), teacher, self.references_path, progress=self.progress, config=t, seed=self.cfg.get("seed")
        )
        if summary.file_kept == 0:
            raise PipelineError(f"the teacher produced no correct reference ({self.references_path}.rejected.jsonl has why)")
        return {"kept": summary.file_kept, "rejected": summary.file_rejected}

    def _train_common(self) -> dict[str, Any]:
        tr = self.cfg.get("train") or {}
        config = tr.get("config")
        if config:
            from mentor.train.config import bundled_path

            config = str(bundled_path(config))
        return {"config": config, "seed": int(self.cfg.get("seed", 0))}

    def stage_sft(self) -> dict[str, Any]:
        from mentor.train import train_sft

        common = self._train_common()
        out = self.model_dir("sft")
        overrides = dict((self.cfg.get("train") or {}).get("sft") or {})
        final = train_sft(
            self.references_path,
            out,
            model=self.model_for("vanilla"),
            config=common["config"],
            resume=_has_checkpoint(out),
            seed=common["seed"],
            **overrides,
        )
        self._drop_checkpoints(out)
        return {"model": str(final)}

    def stage_rl(self, method: str, preset: str) -> dict[str, Any]:
        from mentor.train import train_grpo

        common = self._train_common()
        init = self.model_for("sft") if self.cfg.get("rl_init", "sft") == "sft" else self.model_for("vanilla")
        if self.cfg.get("rl_init", "sft") == "sft" and not Path(init).exists():
            raise PipelineError(f"RL method {method!r} starts from the SFT model, but {init} does not exist: run the sft stage")
        out = self.model_dir(method)
        overrides = dict((self.cfg.get("train") or {}).get("rl") or {})
        final = train_grpo(
            self.references_path,
            out,
            preset=preset,
            model=init,
            config=common["config"],
            resume=_has_checkpoint(out),
            seed=common["seed"],
            **overrides,
        )
        self._drop_checkpoints(out)
        return {"model": str(final), "preset": preset, "init": init}

    def _drop_checkpoints(self, out: Path) -> None:
        """Once ``final/`` is saved the stage is done and its resume checkpoints (weights plus
        optimizer state: ~1.6 GB each for the 135M student) are dead weight; kept with
        ``train.keep_checkpoints: true``."""
        import shutil

        if (self.cfg.get("train") or {}).get("keep_checkpoints") or not (out / "final").exists():
            return
        for ckpt in out.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)

    def _benchmarks(self) -> list[tuple[str, str]]:
        e = self.cfg.get("eval") or {}
        ind = e.get("in_domain") or ["synthetic:test"]
        ood = e.get("out_of_domain") or ["synthetic:ood"]
        return [(b, "in_domain") for b in ind] + [(b, "out_of_domain") for b in ood]

    def stage_eval(self, which: Sequence[str]) -> dict[str, Any]:
        from mentor.eval.runner import evaluate, result_filename
        from mentor.io import write_json

        e = self.cfg.get("eval") or {}
        done: dict[str, list[str]] = {}
        for method in which:
            model = self.model_for(method)
            if method != "vanilla" and not Path(model).exists():
                raise PipelineError(f"cannot evaluate {method!r}: {model} does not exist (run its training stage)")
            jobs = [(b, True) for b, _ in self._benchmarks()]
            if method == "vanilla" and e.get("tool_effect", True):
                jobs += [(b, False) for b, _ in self._benchmarks()]
            generator = None
            with contextlib.ExitStack() as stack:
                for bench, tools in jobs:
                    target = self.eval_dir(method) / _result_name(bench, tools)
                    if target.exists():
                        continue
                    if generator is None:
                        generator = self._generator(method, model, stack)
                    res = evaluate(
                        model,
                        bench,
                        generator=generator,
                        limit=e.get("limit"),
                        tools=tools,
                        max_turns=int(e.get("max_turns", 4)),
                        max_new_tokens=int(e.get("max_new_tokens", 256)),
                        temperature=float(e.get("temperature", 0.0)),
                        seed=int(self.cfg.get("seed", 0)),
                        progress=self.progress,
                        label=method,
                        partial=target.with_name(target.name + ".partial.jsonl"),  # item-level resume
                    )
                    assert result_filename(res) == target.name, (result_filename(res), target.name)
                    write_json(target, res)
                    done.setdefault(method, []).append(target.name)
                    self.console.print(f"  {method} on {bench}{'' if tools else ' (no tools)'}: accuracy {res['accuracy']:.3f}")
            del generator
        return {"evaluated": done}

    def _generator(self, method: str, model: str, stack: contextlib.ExitStack) -> Any:
        """Transformers in this process, or -- with ``eval.server`` (``vllm`` on GPUs) -- a
        server started for this model alone and stopped when its benchmarks are done."""
        from mentor.eval.runner import make_generator

        e = self.cfg.get("eval") or {}
        server = e.get("server")
        if not server:
            return make_generator(model, batch_size=int(e.get("batch_size", 8)))
        from mentor.models import resolve_model
        from mentor.teacher.local_server import serve_model

        log = self.eval_dir(method) / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.console.print(f"  starting {server.split()[0]} for {method} (log: {log})")
        timeout = float(e.get("server_startup_timeout", 900))
        url = stack.enter_context(serve_model(server, model, startup_timeout=timeout, log=log))
        return make_generator(resolve_model(model), base_url=url, batch_size=int(e.get("batch_size", 8)))

    def stage_report(self) -> dict[str, Any]:
        from mentor.analysis.report import build_report
        from mentor.io import write_json

        spec: dict[str, Any] = {}
        for m in methods(self.cfg):
            evals = sorted(str(p) for p in self.eval_dir(m).glob("*.json"))
            entry: dict[str, Any] = {"evals": evals}
            log = self.model_dir(m) / "metrics.jsonl"
            if log.exists():
                entry["train_log"] = str(log)
            if m in rl_methods(self.cfg):
                entry["preset"] = rl_methods(self.cfg)[m]
            spec[m] = entry
        summary = self.summary()
        write_json(self.out / "summary.json", summary)
        rep = build_report(
            self.out,
            methods=spec,
            references=self.references_path,
            title=f"MENTOR pipeline report: {self.cfg.get('name', self.out.name)}",
            summary=summary,
        )
        return {"report": str(rep["markdown"]), "summary": summary}

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per method: in-/out-of-domain accuracy (macro over benchmarks), invalid tool-call rate,
        tool-usage rate (over all tool-enabled evaluations) and the alignment score of its
        in-domain tool distribution with the teacher's (references)."""
        from mentor.analysis import alignment_score, tool_counts
        from mentor.references import load_references

        teacher = tool_counts(r.messages for r in load_references(self.references_path))
        out: dict[str, dict[str, float | None]] = {}
        for m in methods(self.cfg):
            acc: dict[str, list[float]] = {"in_domain": [], "out_of_domain": []}
            calls = invalid = used = n = 0
            student: dict[str, int] = {}
            for bench, domain in self._benchmarks():
                path = self.eval_dir(m) / _result_name(bench, True)
                if not path.exists():
                    continue
                res = json.loads(path.read_text())
                acc[domain].append(res["accuracy"])
                for r in res["records"]:
                    n += 1
                    calls += r["num_tool_calls"]
                    invalid += r["invalid_calls"]
                    used += r["num_tool_calls"] > 0
                    if domain == "in_domain":
                        for t in r["tool_names"]:
                            student[t] = student.get(t, 0) + 1
            out[m] = {
                "in_domain_accuracy": _mean(acc["in_domain"]),
                "out_of_domain_accuracy": _mean(acc["out_of_domain"]),
                "invalid_call_rate": invalid / calls if calls else 0.0 if n else None,
                "tool_usage_rate": used / n if n else None,
                "alignment_score": alignment_score(teacher, student) if n else None,
            }
        return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _has_checkpoint(out: Path) -> bool:
    return out.exists() and any(out.glob("checkpoint-*"))


def _result_name(bench: str, tools: bool) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(bench))
    return f"{safe}{'' if tools else '.no_tools'}.json"


def print_summary(summary: Mapping[str, Mapping[str, Any]], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="MENTOR pipeline summary")
    table.add_column("method")
    for k in SUMMARY_KEYS:
        table.add_column(k.replace("_", " "), justify="right")
    for m, row in summary.items():
        table.add_row(m, *("-" if row.get(k) is None else f"{row[k]:.3f}" for k in SUMMARY_KEYS))
    console.print(table)


# ------------------------------------------------------------------ CLI


def run(
    config: Path = typer.Option(None, "--config", help="Pipeline YAML (default: configs/pipeline/cpu.yaml, the bundled CPU demo)."),
    output_dir: Path = typer.Option(None, "--output-dir", help="Run directory (default: runs/<config name>)."),
    stages: str = typer.Option(None, "--stages", help="Comma-separated subset of stages: data,teach,vanilla,sft,<rl methods>,eval,report."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run the whole MENTOR pipeline (data -> teacher -> vanilla eval -> SFT -> RL -> eval -> report).

    Completed stages are skipped, so re-running a killed run finishes it."""
    from rich.console import Console

    from mentor.io import DataError

    console = Console()
    try:
        cfg = load_config(config)
        out = output_dir or Path("runs") / str(cfg.get("name", "run"))
        pipe = Pipeline(cfg, out, progress=progress)
        chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        t0 = time.perf_counter()
        pipe.run(chosen)
    except (PipelineError, DataError) as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    summary_file = out / "summary.json"
    if summary_file.exists():
        print_summary(json.loads(summary_file.read_text()), console)
    console.print(f"finished in {time.perf_counter() - t0:.0f}s")
    if (out / "report.md").exists():
        console.print(f"report: [bold]{out / 'report.md'}[/bold] (and {out / 'report.html'}, plots in {out / 'plots'})")
