"""The pipeline's stages over one run directory (see ``mentor.pipeline``).

Every stage reads and writes plain files in the run directory and is skipped when its marker
exists, so re-running a killed run finishes it without redoing completed stages.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock
from rich.console import Console

from mentor.analysis.report import build_report, reward_variance_steps, summary_row, teacher_distribution
from mentor.data.datasets import Question, load_questions
from mentor.display import LiveAccuracy, RunDisplay, StageRow, logged_stage, stage_log, terminal_console, trainer_display
from mentor.eval.benchmarks import load_benchmark
from mentor.eval.runner import evaluate, result_name
from mentor.generation import make_generator, serve_model
from mentor.io import atomic_writer, read_jsonl, run_metadata, write_json, write_text_atomic
from mentor.models import resolve_model
from mentor.pipeline.config import TEACHER, TEACHER_STAGE, PipelineConfig, PipelineError
from mentor.pipeline.retrieval import eval_retriever
from mentor.tasks import get_task
from mentor.teacher.base import teacher_generator
from mentor.teacher.factory import build_teacher
from mentor.teacher.generate import generate_references
from mentor.tools.executor import Executor
from mentor.train.config import bundled_path


#: Seconds per unit of work on the bundled CPU default (2 cores; `scripts/run`, README): the
#: prior of the run's ETA, which is rescaled by how long the finished stages really took.
PRIOR_SECONDS = {"question": 0.05, "eval_item": 2.0, "sft_step": 6.0, "rl_step": 30.0, "stage": 2.0}


class Pipeline:
    """The run directory's stages. ``progress``: a live display (else one line per event);
    ``verbose``: library output is also echoed to the terminal (it always goes to
    ``logs/<stage>.log``); ``capture=False`` leaves the process's output alone (for callers that
    run several pipelines in threads of one process: file descriptors are process-wide)."""

    def __init__(self, cfg: Mapping[str, Any], out: str | Path, progress: bool = True, verbose: bool = False,
                 capture: bool = True):
        self.cfg = dict(cfg)
        self.config = PipelineConfig.from_mapping(self.cfg, self.cfg.get("_source") or "pipeline config")
        self.out = Path(out)
        self.progress = progress
        self.verbose = verbose
        self.capture = capture
        self.console = Console(stderr=True)

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
            return str(self.config.student or "smollm2-135m")
        return str(self.model_dir(method) / "final")

    def eval_dir(self, method: str) -> Path:
        return self.out / "eval" / method

    def marker(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def done(self, stage: str) -> bool:
        return self.marker(stage).exists()

    # driver
    def run(self, stages: Sequence[str] | None = None) -> dict[str, Any]:
        order = self.config.stages
        chosen = list(stages) if stages else order
        unknown = [s for s in chosen if s not in order]
        if unknown:
            raise PipelineError(f"unknown stage(s) {unknown}; stages of this config: {', '.join(order)}")
        todo = [s for s in order if s in chosen]
        pending = [s for s in todo if not self.done(s)]
        self._check_one_colocated_vllm_stage(pending)
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._update_meta({})
        t_all = time.perf_counter()
        with RunDisplay(todo, self.budgets(), plain=not self.progress, console=terminal_console()) as display:
            if header := self.precision_header(pending):
                for line in header:
                    display.print(line)
            for stage in todo:
                if self.done(stage):
                    display.finished(stage, 0.0, skipped=True)
                    display.print(f"[mentor run] {stage}: done earlier, skipped")
                    continue
                t0 = time.perf_counter()
                info = self._run_logged(stage, display)
                seconds = time.perf_counter() - t0
                write_json(self.marker(stage), {"stage": stage, "seconds": round(seconds, 2), **info})
                self._update_meta({stage: {"seconds": round(seconds, 2), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}})
                display.finished(stage, seconds)
                display.print(f"[mentor run] {stage}: done in {seconds:.1f}s{_brief(info)}")
        return self._update_meta({}, last_invocation_seconds=round(time.perf_counter() - t_all, 2))

    def _check_one_colocated_vllm_stage(self, stages: Sequence[str]) -> None:
        """GRPO with vLLM colocated (the GPU configs) builds an in-process ``vllm.LLM`` per trainer,
        and vLLM does not give its GPU memory back until the process ends (vllm-project/vllm#21073),
        so a second RL stage in the same process would fail to start its engine: refused before
        any stage runs, naming the one-stage-per-launch commands."""
        rl = [s for s in stages if s in self.config.train.rl_methods]
        if len(rl) < 2:
            return
        from mentor.train import config as C

        try:
            g = C.resolve(self._training_config(), **dict(self.config.train.rl or {}))["grpo"]
        except C.ConfigError as e:
            raise PipelineError(f"train.rl: {e}") from None
        if g.get("use_vllm") and (g.get("vllm_mode") or "colocate") == "colocate":
            raise PipelineError(
                f"stages {', '.join(rl)}: GRPO with vLLM colocated (grpo.use_vllm, vllm_mode: colocate) runs one "
                "RL stage per process -- vLLM keeps its GPU memory until the process ends, so the next stage's "
                f"engine would not start. Run them one at a time: for S in {' '.join(rl)}; do accelerate launch ... "
                "--stages $S; done (README, 'GPU commands')")

    def precision_header(self, stages: Sequence[str]) -> list[str]:
        """The run header's lines on the hardware and the numeric format its training stages resolve
        to (``auto``: mentor.precision), with any warning; recorded in ``run.json`` (``precision``)."""
        rl = list(self.config.train.rl_methods)
        if not any(s == "sft" or s in rl for s in stages):
            return []
        from mentor.train import config as C  # TRL's config classes: only when a training stage runs

        chosen, picks, warnings, hardware = {}, [], [], None
        for stage, overrides, keys in (("sft", self.config.train.sft, ("sft.bf16",)),
                                       ("rl", self.config.train.rl, ("model_dtype", "grpo.bf16"))):
            if stage == "sft" and "sft" not in stages or stage == "rl" and not set(rl) & set(stages):
                continue
            try:
                prec = C.resolve(self._training_config(), **dict(overrides or {}))["_precision"]
            except C.ConfigError as e:  # before any stage runs: the pipeline's error, with the section
                raise PipelineError(f"train.{stage}: {e}") from None
            hardware = prec.hardware
            chosen.update({k: v for k, v in prec.chosen.items() if k in keys})
            picks += prec.picks(keys)
            warnings += [w for w in prec.warnings_for(keys) if w not in warnings]
        self._update_meta({}, precision={"hardware": asdict(hardware), "chosen": chosen, "warnings": warnings})
        return ([f"[mentor run] {hardware.describe()}",
                 "[mentor run] numeric format: " + ", ".join(picks)]
                + [f"[mentor run] warning: {w}" for w in warnings])

    def log_path(self, stage: str) -> Path:
        return stage_log(self.out, stage)

    def _run_logged(self, stage: str, display: RunDisplay) -> dict[str, Any]:
        """One stage with its own display row; its library output goes to ``logs/<stage>.log``."""
        with logged_stage(display, stage, self.log_path(stage), unit=_UNITS.get(stage, "steps"), verbose=self.verbose,
                          capture=self.capture) as row:
            return self._run_stage(stage, row) or {}

    def budgets(self) -> dict[str, float]:
        """Each stage's estimated seconds (``PRIOR_SECONDS`` x its units of work), for the ETA."""
        e, t, p = self.config.eval, self.config.train, PRIOR_SECONDS
        items = (e.limit or 100) * len(e.benchmarks)
        out = {s: p["stage"] for s in self.config.stages}
        out["teach"] = p["question"] * (self.config.data.n or 100)
        out["vanilla"] = p["eval_item"] * items * (2 if e.tool_effect else 1)
        out[TEACHER_STAGE] = out["vanilla"]
        out["sft"] = p["sft_step"] * int((t.sft or {}).get("max_steps") or 100)
        for m in t.rl_methods:
            out[m] = p["rl_step"] * int((t.rl or {}).get("max_steps") or 100)
        out["eval"] = p["eval_item"] * items * (len(self.config.methods) - 1)
        return out

    def _update_meta(self, stages: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        """Read-modify-write of ``run.json`` under a file lock, so that several ``run``s on one
        directory (different stages, e.g. the study's parallel RL runs) keep each other's entries."""
        run_file = self.out / "run.json"
        with FileLock(str(run_file) + ".lock"):
            meta = json.loads(run_file.read_text()) if run_file.exists() else run_metadata(self.cfg, self.cfg.get("seed"))
            meta.setdefault("stages", {}).update(stages)
            meta.update(fields)
            write_json(run_file, meta)
        return meta

    def _write_config(self) -> None:
        path = self.out / "pipeline.yaml"
        clean = {k: v for k, v in self.cfg.items() if not k.startswith("_")}
        text = yaml.safe_dump(clean, sort_keys=False)
        # under a lock and written atomically: runs starting at once on one directory (the study's
        # parallel RL units of a seed) must not read each other's half-written file as another config
        self.out.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                if path.read_text() != text:
                    raise PipelineError(
                        f"{self.out} holds a run with a different config ({path}); "
                        "use another --output-dir, or delete the directory to start over"
                    )
                return
            write_text_atomic(path, text)

    def _run_stage(self, stage: str, row: StageRow | None = None) -> dict[str, Any] | None:
        rl = self.config.train.rl_methods
        if stage in rl:
            return self.stage_rl(stage, rl[stage], row)
        run = {
            "data": lambda: self.stage_data(),
            "teach": lambda: self.stage_teach(row),
            TEACHER_STAGE: lambda: self.stage_teacher_eval(row),
            "vanilla": lambda: self.stage_eval(["vanilla"], row),
            "sft": lambda: self.stage_sft(row),
            "eval": lambda: self.stage_eval([m for m in self.config.methods if m != "vanilla"], row),
            "report": lambda: self.stage_report(),
        }.get(stage)
        if run is None:  # pragma: no cover - run() checks the stage names
            raise PipelineError(f"unknown stage {stage!r}")
        return run()

    # ---------------------------------------------------------------- stages
    def stage_data(self) -> dict[str, Any]:
        d = self.config.data
        qs = load_questions(d.dataset, split=d.split, n=d.n, seed=self.config.seed, question_field=d.question_field,
                            answer_field=d.answer_field, task=d.task)
        with atomic_writer(self.questions_path) as f:
            for q in qs:
                f.write(json.dumps(asdict(q), default=str) + "\n")
        write_json(self.out / "data" / "meta.json", {"source": d.dataset, "n": len(qs)})
        return {"questions": len(qs)}

    def _questions(self) -> list[Question]:
        return [Question(**obj) for _, obj in read_jsonl(self.questions_path)]

    def stage_teach(self, row: StageRow | None = None) -> dict[str, Any]:
        teacher = build_teacher(self.config.teacher)
        section = dict(self.cfg.get("teacher") or {"backend": "program"})
        questions = self._questions()
        if row is not None:
            row.set_total(len(questions))
        summary = generate_references(
            questions, teacher, self.references_path, progress=row.update if row is not None else self.progress,
            config=section, seed=self.cfg.get("seed")
        )
        if summary.file_kept == 0:
            raise PipelineError(f"the teacher produced no correct reference ({self.references_path}.rejected.jsonl has why)")
        return {"kept": summary.file_kept, "rejected": summary.file_rejected}

    def _training_config(self) -> str | None:
        config = self.config.train.config
        return str(bundled_path(config)) if config else None

    def stage_sft(self, row: StageRow | None = None) -> dict[str, Any]:
        from mentor.train import train_sft  # torch, transformers, TRL: only when a training stage runs

        out = self.model_dir("sft")
        final = train_sft(self.references_path, out, model=self.model_for("vanilla"), config=self._training_config(),
                          resume=_has_checkpoint(out), seed=self.config.seed, callbacks=_shown(row),
                          **dict(self.config.train.sft or {}))
        self._drop_checkpoints(out)
        return {"model": str(final)}

    def stage_rl(self, method: str, preset: str, row: StageRow | None = None) -> dict[str, Any]:
        from mentor.train import train_grpo  # torch, transformers, TRL: only when a training stage runs
        from mentor.train.grpo import budget_warning

        from_sft = self.config.rl_init == "sft"
        init = self.model_for("sft") if from_sft else self.model_for("vanilla")
        if from_sft and not Path(init).exists():
            raise PipelineError(f"RL method {method!r} starts from the SFT model, but {init} does not exist: run the sft stage")
        out = self.model_dir(method)
        final = train_grpo(self.references_path, out, preset=preset, model=init, config=self._training_config(),
                           resume=_has_checkpoint(out), seed=self.config.seed, callbacks=_shown(row),
                           **dict(self.config.train.rl or {}))
        self._drop_checkpoints(out)
        budget = json.loads((out / "run.json").read_text()).get("completion_budget") if (out / "run.json").exists() else None
        if warning := budget_warning(budget):
            (row.event if row is not None else self.console.print)(f"warning: {warning}")
        return {"model": str(final), "preset": preset, "init": init, **({"completion_budget": budget} if budget else {})}

    def _drop_checkpoints(self, out: Path) -> None:
        """Once ``final/`` is saved the stage is done and its resume checkpoints (weights plus
        optimizer state: ~1.6 GB each for the 135M student) are dead weight; kept with
        ``train.keep_checkpoints: true``."""
        if self.config.train.keep_checkpoints or not (out / "final").exists():
            return
        for ckpt in out.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)

    def stage_eval(self, which: Sequence[str], row: StageRow | None = None) -> dict[str, Any]:
        e = self.config.eval
        todo: dict[str, list[tuple[str, bool]]] = {}
        for method in which:
            model = self.model_for(method)
            if method != "vanilla" and not Path(model).exists():
                raise PipelineError(f"cannot evaluate {method!r}: {model} does not exist (run its training stage)")
            jobs = [(b, True) for b, _ in e.benchmarks]
            if method == "vanilla" and e.tool_effect:
                jobs += [(b, False) for b, _ in e.benchmarks]
            jobs = [(b, tools) for b, tools in jobs if not (self.eval_dir(method) / result_name(b, tools)).exists()]
            if jobs:
                todo[method] = jobs
        if row is not None and e.limit:
            row.set_total(e.limit * sum(len(j) for j in todo.values()))
        announce = row.event if row is not None else self.console.print
        benches = {b: load_benchmark(b, limit=e.limit) for jobs in todo.values() for b, _ in jobs}
        retriever_section = e.retriever if _searches(benches, [j for jobs in todo.values() for j in jobs]) else None
        with eval_retriever(retriever_section, self.out, announce, name="eval-" + "+".join(todo)) as (executor, retriever):
            evaluated = {m: self._evaluate(m, self.model_for(m), jobs, row, executor, benchmarks=benches)
                         for m, jobs in todo.items()}
        return {"evaluated": evaluated, **({"retriever": retriever} if retriever else {})}

    def stage_teacher_eval(self, row: StageRow | None = None) -> dict[str, Any]:
        """The teacher evaluated as a method (``eval/teacher/``): the students' benchmarks, limit,
        turns, decoding and scoring, through ``evaluate`` with the teacher as its generator
        (``mentor.teacher.base.teacher_generator``), and -- with ``eval.tool_effect`` -- without
        tools too, unless the teacher cannot answer without tools (the program teacher)."""
        e = self.config.eval
        try:
            benches = {b: load_benchmark(b, limit=e.limit) for b, _ in e.benchmarks}
            generator = teacher_generator(build_teacher(self.config.teacher), list(benches.values()), batch_size=int(e.batch_size))
        except (ValueError, RuntimeError) as err:  # no plan / no generator / endpoint unreachable
            raise PipelineError(f"cannot evaluate the teacher ({self.config.teacher.backend}): {err}") from None
        no_tools = e.tool_effect and getattr(generator, "answers_without_tools", True)
        jobs = [(b, True) for b in benches] + ([(b, False) for b in benches] if no_tools else [])
        jobs = [(b, tools) for b, tools in jobs if not (self.eval_dir(TEACHER) / result_name(b, tools)).exists()]
        if row is not None and e.limit:
            row.set_total(e.limit * len(jobs))
        # a program plays a fixed plan: decoding settings do not apply, it is recorded as greedy
        overrides = {"temperature": 0} if getattr(generator, "deterministic", False) else {}
        announce = row.event if row is not None else self.console.print
        with eval_retriever(e.retriever if _searches(benches, jobs) else None, self.out, announce,
                            name=TEACHER) as (executor, retriever):
            written = self._evaluate(TEACHER, str(self.config.teacher.model or self.config.teacher.backend), jobs, row,
                                     executor, generator=generator, benchmarks=benches, overrides=overrides) if jobs else []
        info: dict[str, Any] = {"evaluated": {TEACHER: written}, "teacher": self.config.teacher.backend,
                                **({"retriever": retriever} if retriever else {})}
        if e.tool_effect and not no_tools:
            info["no_tools"] = "not applicable: this teacher does not answer without tools (docs/evaluation.md)"
        return info

    def _evaluate(self, method: str, model: str, jobs: Sequence[tuple[str, bool]], row: StageRow | None = None,
                  executor: Executor | None = None, *, generator: Any = None,
                  benchmarks: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> list[str]:
        """Every (benchmark, tools) job of one model, with one generator for all of them (the
        model's, or ``generator``) and the stage's ``executor`` (its search backend is the
        ``eval.retriever`` server); ``benchmarks``: already loaded benchmarks by name;
        ``overrides``: ``evaluate`` keywords that replace the configured decoding."""
        e = self.config.eval
        written = []
        with contextlib.ExitStack() as stack:
            generator = generator or self._generator(method, model, stack, row)
            for bench, tools in jobs:
                target = self.eval_dir(method) / result_name(bench, tools)
                label = f"{method} {bench}{'' if tools else ' (no tools)'} acc"
                with LiveAccuracy(row, label) as live:
                    res = evaluate(model, (benchmarks or {}).get(bench, bench), generator=generator, executor=executor,
                                   limit=e.limit, tools=tools, max_turns=int(e.max_turns),
                                   **{**e.decoding(self.config.seed), **(overrides or {})},
                                   progress=self.progress if row is None else False,
                                   label=method, partial=target.with_name(target.name + ".partial.jsonl"),  # item-level resume
                                   on_record=live if row is not None else None)
                write_json(target, res)
                written.append(target.name)
                message = f"  {method} on {bench}{'' if tools else ' (no tools)'}: accuracy {res['accuracy']:.3f}"
                if row is not None:
                    row.event(message.strip())
                else:
                    self.console.print(message)
        return written

    def _generator(self, method: str, model: str, stack: contextlib.ExitStack, row: StageRow | None = None) -> Any:
        """Transformers in this process, or -- with ``eval.server`` (``vllm`` on GPUs) -- a
        server started for this model alone and stopped when its benchmarks are done."""
        e = self.config.eval
        if not e.server:
            return make_generator(model, batch_size=int(e.batch_size), backend=e.backend)
        log = self.eval_dir(method) / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        (row.event if row is not None else self.console.print)(f"starting {e.server.split()[0]} for {method} (log: {log})")
        url = stack.enter_context(serve_model(e.server, model, startup_timeout=float(e.server_startup_timeout), log=log))
        return make_generator(resolve_model(model), base_url=url, batch_size=int(e.batch_size))

    def stage_report(self, keep_figures: dict[Path, Any] | None = None) -> dict[str, Any]:
        rl = self.config.train.rl_methods
        spec: dict[str, Any] = {}
        for m in self.config.reported:
            entry: dict[str, Any] = {"evals": sorted(str(p) for p in self.eval_dir(m).glob("*.json"))}
            log = self.model_dir(m) / "metrics.jsonl"
            if log.exists():
                entry["train_log"] = str(log)
            if m in rl:
                entry["preset"] = rl[m]
                run_meta = self.model_dir(m) / "run.json"
                if run_meta.exists():
                    entry["training"] = json.loads(run_meta.read_text(encoding="utf-8")).get("speed_options")
            spec[m] = entry
        summary = self.summary()
        write_json(self.out / "summary.json", summary)
        rep = build_report(self.out, methods=spec, references=self.references_path,
                           title=f"MENTOR pipeline report: {self.cfg.get('name', self.out.name)}", summary=summary,
                           keep_figures=keep_figures, alignment_source=self.config.eval.alignment_source)
        return {"report": str(rep["markdown"]), "summary": summary}

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per method, the teacher first (``mentor.analysis.report.summary_row``): in-/out-of-domain
        accuracy (macro over benchmarks), invalid tool-call rate, tool-usage rate (over all
        tool-enabled evaluations) and the alignment score of its in-domain tool calls with the
        teacher distribution of ``eval.alignment_source`` (the teacher's benchmark calls by default)."""
        results = {m: self._tool_results(m) for m in self.config.reported}
        dist = teacher_distribution(self.config.eval.alignment_source, self.references_path,
                                    [res for _, res in results.get(TEACHER, [])])
        rows = {m: summary_row(rs, dist.counts) for m, rs in results.items()}
        for m in self.config.train.rl_methods:
            if m in rows:
                rows[m].update(reward_variance_steps(self.model_dir(m) / "metrics.jsonl"))
        return rows

    def _tool_results(self, method: str) -> list[tuple[str, dict[str, Any]]]:
        """The method's tool-enabled results that exist, each tagged in_domain / out_of_domain."""
        results = []
        for bench, domain in self.config.eval.benchmarks:
            path = self.eval_dir(method) / result_name(bench, True)
            if path.exists():
                results.append((domain, json.loads(path.read_text())))
        return results


_UNITS = {"teach": "questions", TEACHER_STAGE: "items", "vanilla": "items", "eval": "items", "data": "stage", "report": "stage"}


def _brief(info: Mapping[str, Any]) -> str:
    """The headline of a stage's marker for its "done" line."""
    keys = ("questions", "kept", "rejected")
    parts = [f"{k} {info[k]}" for k in keys if k in info]
    return f" ({', '.join(parts)})" if parts else ""


def _shown(row: StageRow | None) -> list[Any]:
    """The trainer callbacks that feed a stage's display row (none without a row)."""
    return [trainer_display(row)] if row is not None else []


def _searches(benchmarks: Mapping[str, Any], jobs: Sequence[tuple[str, bool]]) -> bool:
    """Whether any (benchmark, tools) job still to run needs the retriever server (``eval.retriever``
    starts only then: not for a resumed stage whose retrieval-QA results are all written)."""
    return any(tools and get_task(benchmarks[b].kind).needs_retriever(benchmarks[b]) for b, tools in jobs)


def _has_checkpoint(out: Path) -> bool:
    return out.exists() and any(out.glob("checkpoint-*"))
