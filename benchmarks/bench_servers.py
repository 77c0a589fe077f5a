"""Load benchmark of the tool server and the retriever (loopback only, bounded, stops by itself).

    python benchmarks/bench_servers.py [--calls 1500] [--seconds 10] [--dense] [--out FILE]
                                       [--previous-src DIR]

Tool server: calls/s and p50/p99 latency of ``POST /call`` at 1, 16 and 64 concurrent clients
and of ``POST /batch`` (64 calls per request), and of sandboxed ``POST /execute``, beside two
naive baselines defined in this file and started as their own processes:

* ``exec``: runs the posted code with ``exec`` inside the server process (as the execution
  server of ReCall, which the paper builds on, does): fast, no isolation;
* ``subprocess``: starts a fresh ``python`` per call.

With ``--previous-src DIR`` (a ``src/`` directory of another checkout, e.g. ``git archive
4487145 src | tar -x -C /tmp/prev``), that version's sandboxed ``/execute`` is measured too, so the
cost of a change to the sandbox is seen side by side on the same machine and load.

Then one infinite loop is posted to each server, and a good call is timed right after it.

Retriever: queries/s of ``/search`` (1 and 16 clients) and ``/batch_search`` over the HotpotQA
questions, and recall@5 of the gold supporting titles (``--dense`` adds the dense index).

Every number is measured here; the table is printed and the JSON written to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ADD_ENV = "def add(firstNumber, secondNumber):\n    return firstNumber + secondNumber\n"
HOTPOT = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "qa" / "hotpotqa_distractor_500.jsonl"


# --------------------------------------------------------------------------- naive baselines


class CodeRequest(BaseModel):
    env: str = ""
    call: str = ""
    timeout: float = 5


def baseline_app(kind: str):
    """The two naive execution servers the benchmark compares against."""
    import contextlib
    import io

    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok", "baseline": kind}

    if kind == "exec":

        @app.post("/execute")
        async def execute_exec(req: CodeRequest):  # in-process exec on the event loop, as ReCall's sandbox
            out = io.StringIO()
            result, error = None, None
            try:
                with contextlib.redirect_stdout(out):
                    ns: dict[str, Any] = {}
                    exec(req.env, ns)
                    result = eval(req.call, ns) if req.call else None
            except Exception as e:  # noqa: BLE001
                error = f"{type(e).__name__}: {e}"
            return {"ok": error is None, "output": out.getvalue(), "result": repr(result), "error": error}

    elif kind == "subprocess":

        @app.post("/execute")
        def execute_subprocess(req: CodeRequest):  # a fresh interpreter per call (thread pool)
            code = req.env + (f"\nprint(repr({req.call}))" if req.call else "")
            try:
                p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=req.timeout)
            except subprocess.TimeoutExpired:
                return {"ok": False, "output": "", "result": None, "error": f"timed out after {req.timeout} s"}
            lines = p.stdout.strip().splitlines()
            return {"ok": p.returncode == 0, "output": p.stdout, "result": lines[-1] if lines else None,
                    "error": p.stderr[-500:] or None}

    else:
        raise ValueError(kind)
    return app


# --------------------------------------------------------------------------- load generator


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def _load(url: str, path: str, payloads, concurrency: int, max_requests: int, seconds: float,
                calls_per_request: int = 1, headers=None, check=None) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:

        async def worker():
            nonlocal sent, errors
            while sent < max_requests and time.perf_counter() < deadline:
                body = payloads(sent)
                sent += 1
                t = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                    ok = r.status_code == 200 and (check is None or check(r.json()))
                except httpx.HTTPError:
                    ok = False
                lat.append(time.perf_counter() - t)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "calls": len(lat) * calls_per_request,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(lat) * calls_per_request / elapsed, 1),
        "p50_ms": round(1000 * _pct(lat, 0.50), 2),
        "p99_ms": round(1000 * _pct(lat, 0.99), 2),
        "_lat": lat,
    }


def load(*args, **kw) -> dict[str, Any]:
    return asyncio.run(_load(*args, **kw))


def _call(i: int) -> dict:
    return {"name": "add", "arguments": {"firstNumber": i, "secondNumber": 1}}


def _exec(i: int) -> dict:
    return {"env": ADD_ENV, "call": f"add({i}, 1)", "timeout": 5}


def _after_infinite_loop(url: str, path: str, loop_body: dict, good_path: str, good_body: dict,
                         wait: float = 3.0) -> dict[str, Any]:
    """Post an infinite loop (without waiting for it), then time one good call."""
    import threading

    import httpx

    def fire():
        try:
            httpx.post(url + path, json=loop_body, timeout=wait + 10)
        except httpx.HTTPError:
            pass

    threading.Thread(target=fire, daemon=True).start()
    time.sleep(0.3)
    t = time.perf_counter()
    try:
        r = httpx.post(url + good_path, json=good_body, timeout=wait)
        return {"good_call_ok": r.status_code == 200, "good_call_ms": round(1000 * (time.perf_counter() - t), 1),
                "outcome": "answered"}
    except httpx.TimeoutException:
        return {"good_call_ok": False, "good_call_ms": None,
                "outcome": f"no answer within {wait:g} s: the server is stuck in the loop"}


# --------------------------------------------------------------------------- benchmark


def httpx_health(url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(url + "/health", timeout=10).json()


def _merge(parts: list[dict[str, Any]], calls_per_request: int = 1) -> dict[str, Any]:
    """One row from several rounds of the same measurement."""
    lat = [x for p in parts for x in p["_lat"]]
    elapsed = sum(p["seconds"] for p in parts)
    return {
        "concurrency": parts[0]["concurrency"],
        "requests": len(lat),
        "calls": len(lat) * calls_per_request,
        "errors": sum(p["errors"] for p in parts),
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(lat) * calls_per_request / elapsed, 1),
        "p50_ms": round(1000 * _pct(lat, 0.50), 2),
        "p99_ms": round(1000 * _pct(lat, 0.99), 2),
        "rounds": len(parts),
    }


def bench_tools(args) -> dict[str, Any]:
    from mentor.generation.server import ServerProcess

    rows: list[dict[str, Any]] = []
    incidents: list[dict[str, Any]] = []
    me = [sys.executable, str(Path(__file__).resolve())]
    n, secs = args.calls, args.seconds

    def add(server, endpoint, res, note=""):
        res = {k: v for k, v in res.items() if not k.startswith("_")}
        rows.append({"server": server, "endpoint": endpoint, **res, "note": note})
        print(f"  {server:<26} {endpoint:<9} c={res['concurrency']:<3} {res['calls_per_s']:>9} calls/s "
              f"p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  errors {res['errors']}", flush=True)

    ok_call = lambda b: b.get("ok") and b.get("content") is not None  # noqa: E731
    ok_exec = lambda b: b.get("ok") is True  # noqa: E731
    with ServerProcess.start(["serve", "tools", "--enable-execute"]) as srv:
        for c in (1, 16, 64):
            add("mentor", "/call", load(srv.url, "/call", _call, c, n, secs, check=ok_call))
        batch = lambda i: [_call(i * 64 + j) for j in range(64)]  # noqa: E731
        for c in (1, 4):
            add("mentor", "/batch", load(srv.url, "/batch", batch, c, max(n // 64, 8), secs, calls_per_request=64),
                "64 calls per request")

    # /execute: every server runs at once and the measurements are interleaved in rounds, so
    # that load from other work on a shared machine falls on all of them alike.
    servers = {"mentor (sandboxed)": (["serve", "tools", "--enable-execute"], None, {})}
    if args.previous_src:
        servers["previous sandbox"] = (["serve", "tools", "--enable-execute"], None,
                                       {"PYTHONPATH": str(args.previous_src.resolve())})
    servers["baseline: in-process exec"] = (["--serve-baseline", "exec"], me, {})
    servers["baseline: subprocess/call"] = (["--serve-baseline", "subprocess"], me, {})
    rounds = max(1, args.rounds)
    procs = {name: ServerProcess.start(a, command=cmd, env=env) for name, (a, cmd, env) in servers.items()}
    try:
        parts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(rounds):
            for name, srv in procs.items():
                budget = max(n // 5, 50) if "subprocess" in name else n
                for c in (1, 16, 64):
                    parts.setdefault((name, c), []).append(
                        load(srv.url, "/execute", _exec, c, max(1, budget // rounds), secs / rounds, check=ok_exec))
        for name in procs:
            for c in (1, 16, 64):
                add(name, "/execute", _merge(parts[(name, c)]), f"{rounds} interleaved rounds")
        sandbox = procs["mentor (sandboxed)"]
        health = httpx_health(sandbox.url)
        for r in rows:
            if r["server"] == "mentor (sandboxed)":
                r["isolation"] = health.get("isolation")

        inc = _after_infinite_loop(sandbox.url, "/execute", {"env": "while True: pass", "timeout": 2},
                                   "/call", _call(1))
        inc2 = _after_infinite_loop(sandbox.url, "/execute", {"env": "while True: pass", "timeout": 2},
                                    "/execute", _exec(1), wait=10)
        time.sleep(2.5)
        incidents.append({"server": "mentor (sandboxed)", **inc, "good_execute_after_loop": inc2,
                          "server_alive_after": sandbox.alive()})
        for name in ("baseline: in-process exec", "baseline: subprocess/call"):
            srv = procs[name]
            inc = _after_infinite_loop(srv.url, "/execute", {"env": "while True: pass", "timeout": 2},
                                       "/execute", _exec(1))
            incidents.append({"server": name, **inc, "server_alive_after": srv.alive()})
    finally:
        for srv in procs.values():
            srv.stop(timeout=3)
    return {"rows": rows, "infinite_loop": incidents}


def bench_retriever(args) -> dict[str, Any]:
    from mentor.io import read_jsonl
    from mentor.serve.corpus import recall_at_k, supporting_titles
    from mentor.generation.server import ServerProcess

    records = [r for _, r in read_jsonl(args.hotpot)][: args.questions]
    questions = [r["question"] for r in records]
    gold = [supporting_titles(r) for r in records]
    out = []
    kinds = ["bm25"] + (["dense"] if args.dense else [])
    for kind in kinds:
        t0 = time.perf_counter()
        with ServerProcess.start(["serve", "retriever", "--corpus", str(args.hotpot), "--index", kind],
                                 timeout=900) as srv:
            import httpx

            startup = time.perf_counter() - t0
            passages = httpx.get(srv.url + "/health").json()["passages"]
            q = lambda i: {"query": questions[i % len(questions)], "top_n": 5}  # noqa: E731
            single = [load(srv.url, "/search", q, c, len(questions), args.seconds) for c in (1, 16)]
            t = time.perf_counter()
            results = []
            for s in range(0, len(questions), 100):
                r = httpx.post(srv.url + "/batch_search", json={"queries": questions[s : s + 100], "top_n": 5},
                               timeout=600)
                results += r.json()["results"]
            batch_secs = time.perf_counter() - t
        rec = [recall_at_k([p["title"] for p in res], g, 5) for res, g in zip(results, gold, strict=True)]
        row = {
            "index": kind,
            "passages": passages,
            "startup_s": round(startup, 1),
            "search_qps_c1": single[0]["calls_per_s"],
            "search_p50_ms_c1": single[0]["p50_ms"],
            "search_qps_c16": single[1]["calls_per_s"],
            "batch_search_qps": round(len(questions) / batch_secs, 1),
            "questions": len(questions),
            "recall_at_5": round(statistics.mean(rec), 4),
            "all_gold_at_5": round(sum(x == 1.0 for x in rec) / len(rec), 4),
        }
        print(f"  retriever {kind}: {row}", flush=True)
        out.append(row)
    return {"rows": out}


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=150)
    t = Table("server", "endpoint", "clients", "calls/s", "p50 ms", "p99 ms", "errors", "calls", title="tool calls")
    for r in result["tools"]["rows"]:
        t.add_row(r["server"], r["endpoint"], str(r["concurrency"]), f"{r['calls_per_s']:.1f}", f"{r['p50_ms']:.2f}",
                  f"{r['p99_ms']:.2f}", str(r["errors"]), str(r["calls"]))
    con.print(t)
    t = Table("server", "good call after an infinite loop", "latency ms", "server alive", title="one infinite loop")
    for r in result["tools"]["infinite_loop"]:
        t.add_row(r["server"], r["outcome"], str(r["good_call_ms"]), str(r["server_alive_after"]))
    con.print(t)
    t = Table("index", "passages", "startup s", "/search q/s (1)", "p50 ms", "/search q/s (16)", "/batch_search q/s",
              "recall@5", "all gold@5", title="retriever on HotpotQA")
    for r in result["retriever"]["rows"]:
        t.add_row(r["index"], str(r["passages"]), str(r["startup_s"]), str(r["search_qps_c1"]),
                  str(r["search_p50_ms_c1"]), str(r["search_qps_c16"]), str(r["batch_search_qps"]),
                  f"{r['recall_at_5']:.3f}", f"{r['all_gold_at_5']:.3f}")
    con.print(t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1500, help="max requests per measurement")
    p.add_argument("--seconds", type=float, default=10.0, help="max seconds per measurement")
    p.add_argument("--questions", type=int, default=500, help="HotpotQA questions for the retriever")
    p.add_argument("--hotpot", type=Path, default=HOTPOT)
    p.add_argument("--dense", action="store_true", help="also benchmark the dense index (needs mentor[dense])")
    p.add_argument("--skip-retriever", action="store_true")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the /execute comparison")
    p.add_argument("--previous-src", type=Path, help="also measure /execute of the mentor under this src/ directory")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "bench_servers.json")
    p.add_argument("--serve-baseline", choices=["exec", "subprocess"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.serve_baseline:  # internal: run one naive baseline server (loopback only)
        import uvicorn

        uvicorn.run(baseline_app(args.serve_baseline), host="127.0.0.1", port=args.port, log_level="warning")
        return

    from mentor.io import run_metadata, write_json

    t0 = time.perf_counter()
    result: dict[str, Any] = run_metadata({k: str(v) for k, v in vars(args).items()})
    import os

    result["machine"] = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                         "note": "client and servers share the machine (loopback)"}
    print("tool server and baselines:", flush=True)
    result["tools"] = bench_tools(args)
    result["retriever"] = {"rows": []}
    if not args.skip_retriever:
        print("retriever:", flush=True)
        result["retriever"] = bench_retriever(args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"]["loadavg_end"] = os.getloadavg()
    print_tables(result)
    write_json(args.out, result)
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
