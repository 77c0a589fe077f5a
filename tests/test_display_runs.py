"""The run display (captured library output, plain event lines, ETA) and `mentor runs`."""

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mentor.display import RunDisplay, fmt_duration, step_measures
from mentor.runs import find_runs, headline, read_run

MENTOR = [sys.executable, "-m", "mentor.cli"]


def _run_py(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, **kw)


def test_capture_output_sends_library_chatter_to_the_log_and_keeps_the_terminal(tmp_path):
    log = tmp_path / "logs" / "sft.log"
    r = _run_py(f"""
        import os, sys, warnings, logging
        from mentor.display import capture_output, terminal_console
        print("before")
        terminal = terminal_console()
        with capture_output({str(log)!r}):
            print("{{'loss': 1.0, 'grad_norm': 2.0}}")          # a trainer's raw dict (python stdout)
            os.write(2, b"Loading weights 0/272\\r272/272\\n")      # a C-level / fd write
            warnings.warn("some FutureWarning", FutureWarning)
            logging.getLogger("transformers").warning("a library warning")
            terminal.print("step 1/4 reward 0.5")                 # our display
        print("after")
    """)
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    for chatter in ("'loss': 1.0", "Loading weights", "some FutureWarning", "a library warning"):
        assert chatter in text and chatter not in r.stdout + r.stderr
    assert "step 1/4 reward 0.5" in r.stderr and "step 1/4" not in text
    assert r.stdout.splitlines() == ["before", "after"]


def test_capture_output_verbose_echoes_and_errors_name_the_log(tmp_path):
    log = tmp_path / "x.log"
    r = _run_py(f"""
        import os
        from mentor.display import capture_output, terminal_console
        with capture_output({str(log)!r}, echo=terminal_console().file):
            os.write(1, b"chatter line\\n")
        try:
            with capture_output({str(log)!r}):
                raise RuntimeError("boom")
        except RuntimeError as e:
            print("NOTES", getattr(e, "__notes__", None))
    """)
    assert r.returncode == 0, r.stderr
    assert "chatter line" in r.stderr and "chatter line" in log.read_text()
    assert f"(full log: {log})" in r.stdout


def test_command_stage_verbose_echoes_the_log_and_an_error_names_it(tmp_path):
    log = tmp_path / "out" / "logs" / "sft.log"
    r = _run_py(f"""
        import os
        from mentor.display import command_stage, describe_error
        with command_stage("sft", {str(log)!r}, verbose=True) as row:
            os.write(2, b"{{'loss': 0.5}}\\n")
            row.update(1, loss=0.5)
        try:
            with command_stage("sft", {str(log)!r}) as row:
                print("Loading weights 272/272")
                raise ValueError("bad references")
        except ValueError as e:
            print("ERROR", describe_error(e))
    """)
    assert r.returncode == 0, r.stderr
    assert "{'loss': 0.5}" in r.stderr and "[sft] steps 1  loss 0.500" in r.stderr  # echoed, and the row (plain: no TTY)
    assert r.stdout.splitlines() == ["ERROR bad references", f"(full log: {log})"]
    assert log.read_text().splitlines() == ["{'loss': 0.5}", "Loading weights 272/272"]


def test_plain_display_prints_one_line_per_event_with_a_run_eta(capsys):
    from rich.console import Console

    console = Console(file=sys.stdout, force_terminal=False, width=200)
    disp = RunDisplay(["data", "sft", "mentor", "eval"], budgets={"data": 2, "sft": 100, "mentor": 200, "eval": 50},
                      plain=True, console=console)
    assert disp.eta() == 352
    disp.finished("data", 0.01)  # a tiny stage says nothing about the speed of the others
    assert disp.scale() == 1.0 and disp.eta() == 350
    disp.finished("sft", 50.0)  # took half its budget: the rest is rescaled by 0.5
    assert disp.scale() == 0.5 and disp.eta() == 125
    with disp.stage("mentor", total=4) as row:
        row.update(1, **step_measures({"reward": 1.5, "rewards/correctness/mean": 0.5, "tools/invalid_call_rate": 0.25,
                                       "tools/usage_rate": 1.0}))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    line = out[0]
    assert line.startswith("[mentor] steps 1/4  reward 1.500  correctness 0.500  invalid 0.250  tool use 1.000")
    assert "s/step" in line and "run ETA" in line


def test_without_a_tty_the_display_is_plain_even_when_progress_is_asked(capsys):
    from rich.console import Console

    disp = RunDisplay(["sft"], plain=False, console=Console(file=sys.stdout, force_terminal=False, width=200))
    assert disp.plain  # CI: `mentor run` without --no-progress still prints plain lines
    live = RunDisplay(["sft"], plain=False, console=Console(file=io.StringIO(), force_terminal=True, width=200))
    assert not live.plain
    live.close()


def test_plain_lines_are_throttled_but_the_first_and_last_are_printed(capsys, monkeypatch):
    from rich.console import Console

    import mentor.display as display

    clock = iter(float(t) for t in range(0, 1000))
    monkeypatch.setattr(display.time, "perf_counter", lambda: next(clock))
    disp = RunDisplay(["teach"], plain=True, console=Console(file=sys.stdout, force_terminal=False, width=200), run_row=False)
    with disp.stage("teach", total=48, unit="questions") as row:
        for i in range(1, 49):
            row.update(i)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[teach] questions 1/48  ") and lines[-1].startswith("[teach] questions 48/48  ")
    assert 2 < len(lines) < 48  # one line per PLAIN_INTERVAL (here 2 clock ticks per update)
    assert not any("run ETA" in line for line in lines)  # a command's one stage has no run
    with disp.stage("eval", total=None, unit="items") as row:  # no total: the last state is printed on close
        row.update(1, acc=0.0)
        row.update(2, acc=0.5)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("[eval] items 2  acc 0.500")


def test_a_restarted_row_counts_its_rate_from_the_restart(capsys, monkeypatch):
    from rich.console import Console

    import mentor.display as display

    now = [0.0]
    monkeypatch.setattr(display.time, "perf_counter", lambda: now[0])
    disp = RunDisplay(["grpo"], plain=True, console=Console(file=sys.stdout, force_terminal=False, width=200), run_row=False)
    with disp.stage("grpo") as row:
        now[0] = 100.0
        row.begin(total=10, done=6)  # a trainer resumed at step 6 of 10
        now[0] = 130.0
        row.update(8, loss=0.5)
        assert row.remaining() == pytest.approx(30.0)  # 15 s/step for the 2 steps left
    assert capsys.readouterr().out.strip() == "[grpo] steps 8/10  loss 0.500  15.0 s/step"


def test_step_measures_sft_and_fmt_duration():
    assert step_measures({"loss": 0.7, "grad_norm": 1.0}) == {"loss": 0.7}
    assert step_measures({"epoch": 1}) == {}
    assert fmt_duration(59) == "0:59" and fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "-"


def _fake_run(root: Path, name: str, done: dict[str, float], summary: dict | None = None) -> Path:
    import yaml

    run = root / name
    (run / "stages").mkdir(parents=True)
    (run / "pipeline.yaml").write_text(yaml.safe_dump({"name": name, "train": {"methods": {"mentor": "mentor"}}}))
    (run / "run.json").write_text(json.dumps({"started_at": "2026-11-23T10:00:00", "stages": {}}))
    for stage, seconds in done.items():
        (run / "stages" / f"{stage}.json").write_text(json.dumps({"stage": stage, "seconds": seconds}))
    if summary:
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "plots").mkdir()
        (run / "plots" / "fig6.png").write_bytes(b"png")
        (run / "report.html").write_text("<html></html>")
    return run


SUMMARY = {"sft": {"in_domain_accuracy": 0.5, "out_of_domain_accuracy": 0.05, "invalid_call_rate": 0.2},
           "mentor": {"in_domain_accuracy": 0.625, "out_of_domain_accuracy": None}}


def test_read_run_status_and_headline(tmp_path):
    all_done = {s: 10.0 for s in ("data", "teach", "teacher_eval", "vanilla", "sft", "mentor", "eval", "report")}
    complete = _fake_run(tmp_path, "a", all_done, SUMMARY)
    partial = _fake_run(tmp_path, "b", {"data": 1.0, "teach": 2.5})
    (tmp_path / "not-a-run").mkdir()
    assert find_runs(tmp_path) == [complete, partial]
    a, b = read_run(complete), read_run(partial)
    assert a.complete and a.seconds == 80.0 and a.next_stage is None
    assert not b.complete and b.next_stage == "teacher_eval" and b.seconds == 3.5 and len(b.stages) == 8
    assert headline(a.summary) == "sft 0.50/0.05, mentor 0.62/-"


def test_runs_cli_list_and_show(tmp_path):
    all_done = {s: 10.0 for s in ("data", "teach", "teacher_eval", "vanilla", "sft", "mentor", "eval", "report")}
    run = _fake_run(tmp_path, "a", all_done, SUMMARY)
    _fake_run(tmp_path, "b", {"data": 1.0})
    env = {**os.environ, "COLUMNS": "250"}
    r = subprocess.run([*MENTOR, "runs", "list", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if str(tmp_path) in line]
    assert len(rows) == 2
    assert "complete" in rows[0] and "8/8" in rows[0] and "1:20" in rows[0] and "mentor 0.62/-" in rows[0]
    assert "next: teach" in rows[1] and "1/8" in rows[1]
    r = subprocess.run([*MENTOR, "runs", "show", str(run)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MENTOR pipeline summary" in r.stdout and "0.625" in r.stdout
    assert f"report: {run / 'report.html'}" in r.stdout and f"plots: {run / 'plots' / 'fig6.png'}" in r.stdout
    r = subprocess.run([*MENTOR, "runs", "show", str(tmp_path / "nope")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_report_open_prints_the_report_and_plot_paths_without_rebuilding(tmp_path):
    run = _fake_run(tmp_path, "a", {"data": 1.0}, SUMMARY)
    before = (run / "report.html").stat().st_mtime_ns
    r = subprocess.run([*MENTOR, "report", str(run), "--open"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [(run / "report.html").resolve().as_uri(), (run / "plots" / "fig6.png").resolve().as_uri()]
    assert (run / "report.html").stat().st_mtime_ns == before


def test_live_accuracy_shows_the_running_evaluation_only(capsys):
    """An eval stage over several models and benchmarks: the row shows the accuracy of the
    evaluation under way, not a pile of finished ones, and never pools two benchmarks."""
    from rich.console import Console

    from mentor.display import LiveAccuracy

    disp = RunDisplay(["eval"], plain=True, console=Console(file=sys.stdout, force_terminal=False, width=300), run_row=False)
    with disp.stage("eval", total=4, unit="items") as row:
        with LiveAccuracy(row, "sft synthetic:test acc") as live:
            live({"correct": True})
            live({"correct": True})
        with LiveAccuracy(row, "sft synthetic:ood acc") as live:
            live({"correct": False})
            live({"correct": True})
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("[eval] items 4/4  sft synthetic:ood acc 0.500  ")
    assert "synthetic:test" not in last


def test_a_finished_accuracy_leaves_the_live_row_at_once():
    """Live (terminal) display: when an evaluation ends, its accuracy leaves the row immediately,
    not at the next model's first item (which may be minutes away, behind a model load)."""
    from rich.console import Console

    from mentor.display import LiveAccuracy

    disp = RunDisplay(["eval"], plain=False, console=Console(file=io.StringIO(), force_terminal=True, width=300), run_row=False)
    try:
        with disp.stage("eval", total=4, unit="items") as row:
            task = next(t for t in disp._progress.tasks if t.id == row._task)
            with LiveAccuracy(row, "sft synthetic:test acc") as live:
                live({"correct": True})
                assert "sft synthetic:test acc 1.000" in task.fields["measures"]
            assert "synthetic:test" not in task.fields["measures"]
    finally:
        disp.close()
