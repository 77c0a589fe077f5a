"""What a person sees while ``mentor`` works.

- ``capture_output(log)``: for one stage, everything written to the process's stdout and
  stderr -- TRL's per-step dicts, transformers' load/save bars, warnings, datasets' map bars,
  even C-level output -- goes to a log file in the run directory (file-descriptor redirect, so
  nothing slips past). A ``terminal_console()`` made before still reaches the terminal; with
  ``echo`` (``--verbose``) the chatter is also echoed there.
- ``RunDisplay``: one rich display for a run: a row for the whole run (stages done, elapsed and
  an ETA from the stages' budgets, rescaled by how long finished stages really took) and a row
  for the current stage with its own measure (GRPO: reward, its components, invalid-call and
  tool-usage rates, s/step; SFT: loss; evaluation: accuracy so far). Without a TTY, or with
  ``plain=True`` (``--no-progress``), it prints one plain line per event instead (CI-friendly).
- ``logged_stage(display, name, log)``: one stage of a display -- its row, and its output in
  ``log`` (echoed with ``--verbose``) -- as ``mentor run`` runs each stage; ``command_stage(name,
  log)``: the same for a command that is one stage (``mentor train``, ``eval``, ``teach``).
- ``TrainerDisplay``: a ``transformers.TrainerCallback`` that feeds a stage row from the
  trainer's logs (the logs themselves go to the stage's log file); ``LiveAccuracy`` feeds an
  evaluation's row.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

def terminal_console() -> Console:
    """A console on a duplicate of the current stderr: made before a stage's output is captured,
    it keeps reaching the user's terminal while ``capture_output`` sends fds 1 and 2 to a log."""
    fd = os.dup(2)
    return Console(file=os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace"),
                   force_terminal=_isatty(fd) or None)


@contextlib.contextmanager
def capture_output(log: str | os.PathLike, echo: IO[str] | None = None) -> Iterator[Path]:
    """Send file descriptors 1 and 2 to ``log`` (appended) until the block ends.

    Library chatter lands in the log; a ``terminal_console()`` made before keeps writing to the
    terminal. With ``echo`` (``--verbose``: the terminal console's file) the log is also echoed
    there as it is written. On an exception the output stays in the log and the exception
    propagates with the log's path added as a note."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    sink = open(log, "ab", buffering=0)  # noqa: SIM115 -- closed in finally
    pump = _Echo(sink, echo) if echo is not None else None
    target = pump.write_fd if pump else sink.fileno()
    os.dup2(target, 1)
    os.dup2(target, 2)
    try:
        yield log
    except BaseException as e:
        with contextlib.suppress(Exception):
            e.add_note(f"(full log: {log})")
        raise
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        if pump:
            pump.close()
        sink.close()


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class _Echo:
    """A pipe whose bytes go to the log and to the terminal (``--verbose``)."""

    def __init__(self, sink: IO[bytes], term: IO[str]):
        self.read_fd, self.write_fd = os.pipe()
        self.sink, self.term = sink, term
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while chunk := os.read(self.read_fd, 65536):
            self.sink.write(chunk)
            with contextlib.suppress(Exception):
                self.term.write(chunk.decode("utf-8", "replace"))
                self.term.flush()

    def close(self) -> None:
        os.close(self.write_fd)
        self.thread.join(timeout=5)
        os.close(self.read_fd)


def quiet_libraries() -> None:
    """Turn off the progress bars of transformers, datasets and huggingface_hub (they would only
    fill the log files with carriage returns) and keep their warnings in the logs. Libraries that
    are not installed are skipped."""
    import logging
    import warnings

    logging.captureWarnings(True)
    warnings.filterwarnings("default")
    with contextlib.suppress(ImportError):
        import transformers

        transformers.utils.logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


#: stages estimated below this many seconds do not rescale the others' estimates
MIN_SCALING_BUDGET = 30.0


class RunDisplay:
    """One display for a run of stages. ``budgets`` maps each stage to its estimated seconds;
    the run's ETA is the remaining stages' estimates scaled by (actual / estimated) of the
    stages finished so far, plus the current stage's own remaining time. ``run_row=False`` (a
    command that is one stage): no row and no ETA for the run, and the stage's row stays on the
    screen when it ends."""

    def __init__(self, stages: list[str], budgets: Mapping[str, float] | None = None, plain: bool | None = None,
                 console: Console | None = None, run_row: bool = True):
        self.stages = list(stages)
        self.run_row = run_row
        self.budgets = {s: float((budgets or {}).get(s, 0.0)) for s in self.stages}
        self.console = console or terminal_console()
        # no TTY: plain lines, whatever was asked; under `accelerate launch` only the main process
        # draws a live display (every rank would draw its own rows on the one terminal)
        self.plain = bool(plain) or not self.console.is_terminal or os.environ.get("RANK", "0") not in ("", "0")
        self.t0 = time.perf_counter()
        self.actual: dict[str, float] = {}
        self.measured: dict[str, float] = {}  # finished stages that rescale the estimates
        self.estimated_done = 0.0
        self._progress = None
        self._run_task = None

    def __enter__(self) -> RunDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def print(self, text: str, markup: bool = False) -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(text, highlight=False, markup=markup, soft_wrap=True)

    # ------------------------------------------------------------ ETA
    def scale(self) -> float:
        """Actual / estimated seconds of the finished stages big enough to say something (a
        0.1-second data stage against its 2-second budget would shrink every estimate 20x)."""
        return sum(self.measured.values()) / self.estimated_done if self.estimated_done > 0 else 1.0

    def eta(self, current: str | None = None, current_remaining: float | None = None) -> float | None:
        rest = [s for s in self.stages if s not in self.actual and s != current]
        est = sum(self.budgets[s] for s in rest) * self.scale()
        if current is not None and current not in self.actual:
            est += current_remaining if current_remaining is not None else self.budgets.get(current, 0.0) * self.scale()
        return est

    def finished(self, stage: str, seconds: float, skipped: bool = False) -> None:
        self.actual[stage] = 0.0 if skipped else seconds
        if not skipped and self.budgets.get(stage, 0.0) >= MIN_SCALING_BUDGET:
            self.measured[stage] = seconds
            self.estimated_done += self.budgets[stage]
        if self._progress is not None and self._run_task is not None:
            self._progress.update(self._run_task, completed=len(self.actual), eta=fmt_duration(self.eta()))

    # ------------------------------------------------------------ stages
    def stage(self, name: str, total: int | None = None, unit: str = "steps") -> StageRow:
        return StageRow(self, name, total, unit)

    def _ensure_progress(self):
        if self._progress is None and not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[measures]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=self.console,
                transient=False,
                # rich would otherwise route sys.stdout/sys.stderr through the live display, i.e. to
                # the terminal, past capture_output's redirect of the file descriptors
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            if self.run_row:
                self._run_task = self._progress.add_task(
                    "[bold]run", total=len(self.stages), completed=len(self.actual), measures="", eta=fmt_duration(self.eta())
                )
        return self._progress


#: in plain mode, a stage's progress lines come at most this often (its first and last always)
PLAIN_INTERVAL = 5.0


class StageRow:
    """The current stage's row: ``update(done, **measures)``; ``event(text)`` prints a line.
    In plain mode ``update`` prints a line at most every ``PLAIN_INTERVAL`` seconds (the first
    and the last always: a 48-question teacher stage is not 48 lines)."""

    def __init__(self, display: RunDisplay, name: str, total: int | None, unit: str):
        self.display, self.name, self.total, self.unit = display, name, total, unit
        self.t0 = time.perf_counter()
        self.done = self.start = 0
        self.measures: dict[str, Any] = {}
        self._task = None
        self._last_plain = 0.0
        self._unprinted: str | None = None
        progress = display._ensure_progress()
        if progress is not None:
            self._task = progress.add_task(name, total=total, measures="", eta="-")

    def set_total(self, total: int) -> None:
        self.total = total
        if self._task is not None:
            self.display._progress.update(self._task, total=total)

    def begin(self, total: int | None, done: int = 0) -> None:
        """(Re)start the row's count at ``done`` of ``total`` (a trainer resumed from a checkpoint
        at step ``done``, or the second trainer of ``mentor train sft-rl``): the rate counts from here."""
        self.t0, self.done, self.start = time.perf_counter(), done, done
        if total:
            self.set_total(total)
        if self._task is not None:
            self.display._progress.reset(self._task, total=self.total, completed=done, measures="", eta="-")

    def remaining(self) -> float | None:
        if not self.total or self.done <= self.start:
            return None
        per = (time.perf_counter() - self.t0) / (self.done - self.start)
        return per * (self.total - self.done)

    def update(self, done: int, **measures: Any) -> None:
        self.done = done
        self.measures.update({k: v for k, v in measures.items() if v is not None})
        elapsed = time.perf_counter() - self.t0
        per = elapsed / (done - self.start) if done > self.start else None
        parts = [self._measures_text()] if self.measures else []
        if per is not None:
            parts.append(f"{per:.1f} s/{self.unit.rstrip('s') or self.unit}")
        text = "  ".join(parts)
        run_eta = self.display.eta(self.name, self.remaining()) if self.display.run_row else None
        progress = self.display._progress
        if progress is not None and self._task is not None:
            progress.update(self._task, completed=done, measures=text, eta=fmt_duration(self.remaining()))
            if self.display._run_task is not None:
                progress.update(self.display._run_task, eta=fmt_duration(run_eta))
            return
        of = f"/{self.total}" if self.total else ""
        line = "  ".join(x for x in (f"[{self.name}] {self.unit} {done}{of}", text,
                                     f"run ETA {fmt_duration(run_eta)}" if self.display.run_row else "") if x)
        now = time.perf_counter()
        if self._last_plain and now - self._last_plain < PLAIN_INTERVAL and not (self.total and done >= self.total):
            self._unprinted = line
            return
        self._last_plain, self._unprinted = now, None
        self.display.print(line)

    def event(self, text: str) -> None:
        self.display.print(f"[{self.name}] {text}")

    def drop(self, key: str) -> None:
        """Stop showing the measure ``key`` (a finished evaluation's accuracy); the live row is
        redrawn at once, a plain display prints nothing."""
        self.measures.pop(key, None)
        progress = self.display._progress
        if progress is not None and self._task is not None:
            progress.update(self._task, measures=self._measures_text())

    def _measures_text(self) -> str:
        return "  ".join(f"{k} {_fmt(v)}" for k, v in self.measures.items())

    def close(self) -> None:
        if self._unprinted is not None:  # plain mode: the stage's last state, held back by the interval
            self.display.print(self._unprinted)
            self._unprinted = None
        progress = self.display._progress
        if progress is not None and self._task is not None and self.display.run_row:
            progress.update(self._task, visible=False)
            progress.remove_task(self._task)
        self._task = None

    def __enter__(self) -> StageRow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage_log(directory: str | os.PathLike, name: str) -> Path:
    """Where a stage's library output goes: ``DIRECTORY/logs/NAME.log`` (a run directory, or
    the output directory of ``mentor train`` / ``mentor eval`` with several benchmarks)."""
    return Path(directory) / "logs" / f"{name}.log"


@contextlib.contextmanager
def logged_stage(display: RunDisplay, name: str, log: str | os.PathLike, unit: str = "steps", verbose: bool = False,
                 capture: bool = True) -> Iterator[StageRow]:
    """One stage of ``display``: its row, with the process's output sent to ``log`` (and echoed
    to the terminal with ``verbose``) until the block ends. ``capture=False`` leaves the output
    alone (file descriptors are process-wide: callers running stages in threads)."""
    with display.stage(name, unit=unit) as row:
        if not capture:
            yield row
            return
        with capture_output(log, echo=display.console.file if verbose else None):
            yield row


@contextlib.contextmanager
def command_stage(name: str, log: str | os.PathLike, progress: bool = True, verbose: bool = False,
                  unit: str = "steps") -> Iterator[StageRow]:
    """A command that is one stage (``mentor train``, ``eval``, ``teach``): the display and log
    capture of ``mentor run``'s stages, without a run row. ``progress=False`` (or no TTY): plain
    lines. An error raised in the block carries the log's path as a note (``describe_error``)."""
    with RunDisplay([name], plain=not progress, console=terminal_console(), run_row=False) as display:
        with logged_stage(display, name, log, unit=unit, verbose=verbose) as row:
            yield row


def describe_error(e: BaseException) -> str:
    """An error's message and its notes (``capture_output`` adds the log's path as one)."""
    return str(e) + "".join(f"\n{n}" for n in getattr(e, "__notes__", ()))


class LiveAccuracy:
    """``on_record`` for one evaluation (one benchmark of one model): the stage row shows items
    done and the accuracy so far under ``label``. Use it as a context manager: when the evaluation
    ends its measure leaves the row (its final accuracy is the caller's event line), so the next
    benchmark's accuracy is not shown next to a finished one's, nor pooled with it."""

    def __init__(self, row: StageRow | None, label: str = "accuracy"):
        self.row, self.label, self.n, self.correct = row, label, 0, 0

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.n += 1
        self.correct += bool(record.get("correct"))
        if self.row is not None:
            self.row.update(self.row.done + 1, **{self.label: self.correct / self.n})

    def __enter__(self) -> LiveAccuracy:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.row is not None:
            self.row.drop(self.label)


def trainer_display(row: StageRow):
    """A ``TrainerCallback`` that feeds ``row`` from the trainer's logs: GRPO steps show the
    reward, its components, the invalid-call and tool-usage rates; SFT steps the loss."""
    from transformers import TrainerCallback

    class TrainerDisplay(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            row.begin(int(state.max_steps) or None, int(state.global_step))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            measures = step_measures(logs)
            if measures:
                row.update(int(state.global_step), **measures)

    return TrainerDisplay()


def step_measures(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The measures a person wants from one trainer log record, in display order."""
    out: dict[str, Any] = {}
    if "reward" in logs:
        out["reward"] = logs["reward"]
        for k, v in logs.items():
            if k.startswith("rewards/") and k.endswith("/mean"):
                out[k[len("rewards/"):-len("/mean")]] = v
        if "tools/invalid_call_rate" in logs:
            out["invalid"] = logs["tools/invalid_call_rate"]
        if "tools/usage_rate" in logs:
            out["tool use"] = logs["tools/usage_rate"]
    elif "loss" in logs:
        out["loss"] = logs["loss"]
    return out


#: summary.json's columns, in table order
SUMMARY_KEYS = ("in_domain_accuracy", "out_of_domain_accuracy", "invalid_call_rate", "tool_usage_rate", "alignment_score")


def summary_table(summary: Mapping[str, Mapping[str, Any]], title: str = "MENTOR pipeline summary") -> Table:
    table = Table(title=title)
    table.add_column("method")
    for k in SUMMARY_KEYS:
        table.add_column(k.replace("_", " "), justify="right")
    for m, row in summary.items():
        table.add_row(m, *("-" if row.get(k) is None else f"{row[k]:.3f}" for k in SUMMARY_KEYS))
    varied = [f"{m} {row['steps_with_reward_variance']}/{row['rl_steps']}" for m, row in summary.items()
              if row.get("rl_steps")]
    if varied:  # GRPO learns only from groups whose rollouts' rewards differ
        table.caption = "GRPO steps with reward variance: " + ", ".join(varied)
    return table
