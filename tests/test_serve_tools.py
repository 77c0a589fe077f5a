"""The tool execution server, started as a real process on a free loopback port."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import time

import httpx
import pytest

from mentor.generation.server import ServerProcess, free_port
from mentor.tools import ALL_TOOLS, Executor, callables, execute_local, schemas
from mentor.tools.client import call_remote, call_remote_batch

pytestmark = pytest.mark.slow

CALLS = [
    ("add", {"firstNumber": 2, "secondNumber": 3}),
    ("divide", {"numerator": 7, "denominator": 2}),
    ("divide", {"numerator": 1, "denominator": 0}),
    ("sqrt", '{"number": 16}'),
    ("power", {"base": 10, "exponent": 500}),
    ("sum_numbers", {"numbers": [1, 2.5, "3"]}),
    ("multiply", {"firstNumber": "abc", "secondNumber": 1}),
    ("modulo", {"dividend": 7}),
    ("nope", {}),
    ("round_number", {"number": 2.5, "extra": 1}),
]


@pytest.fixture(scope="module")
def server():
    with ServerProcess.start(["serve", "tools", "--enable-execute"], timeout=60) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_health_tools_and_openapi(http):
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["execute"] is True and health["tools"] == len(ALL_TOOLS)
    assert http.get("/tools").json() == schemas(list(ALL_TOOLS))
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/call", "/batch", "/execute", "/tools", "/health"} <= set(paths)


def test_call_and_batch_answer_like_in_process(http):
    for name, args in CALLS:
        r = http.post("/call", json={"name": name, "arguments": args})
        want = execute_local(name, args)
        assert r.json() == want.to_dict(), name
        assert r.status_code == (200 if want.ok else 404 if name not in ALL_TOOLS else 422)
    r = http.post("/batch", json=[{"name": n, "arguments": a} for n, a in CALLS])
    assert r.status_code == 200
    assert r.json() == [execute_local(n, a).to_dict() for n, a in CALLS]


def test_client_routes_calls_through_the_server(server):
    calls = CALLS + [(None, {}), ("add", [1, 2])]  # unsendable calls are answered in-process
    assert call_remote_batch(server.url, calls) == [execute_local(n, a) for n, a in calls]
    assert call_remote(server.url, "add", {"firstNumber": 1, "secondNumber": 1}).content == "2"
    remote = Executor(tool_server=server.url)
    assert remote.execute("multiply", {"firstNumber": 6, "secondNumber": 7}).content == "42"
    assert remote.execute_many(CALLS[:3]) == [execute_local(n, a) for n, a in CALLS[:3]]
    add = {f.__name__: f for f in callables("math", remote)}["add"]
    assert add(firstNumber=40, secondNumber=2) == "42"
    # the allowed tools are checked before anything is sent
    only_add = remote.allowing(["add"])
    assert [o.ok for o in only_add.execute_many([("add", {"firstNumber": 1, "secondNumber": 1}), ("multiply", {})])] == [True, False]
    assert "not available" in only_add.execute("multiply", {"firstNumber": 1, "secondNumber": 1}).error
    down = call_remote(f"http://127.0.0.1:{free_port()}", "add", {"firstNumber": 1, "secondNumber": 1})
    assert not down.ok and "unreachable" in down.error


def _post_raw(http, path, content, headers=None):
    return http.post(path, content=content, headers={"content-type": "application/json", **(headers or {})})


def test_fault_injection_leaves_the_server_answering(server, http):
    """Garbage, oversized bodies and hostile code: every bad request gets a clear 4xx (or a
    timeout result), nothing is a 500, and the server still answers a good call afterwards."""
    bad = {
        "malformed JSON": (_post_raw(http, "/call", b'{"name": "add", "arguments": {'), 400),
        "not JSON at all": (_post_raw(http, "/call", b"\xff\xfe garbage"), 400),
        "empty body": (_post_raw(http, "/call", b""), 422),
        "name is a number": (http.post("/call", json={"name": 5, "arguments": {}}), 422),
        "arguments is a list": (http.post("/call", json={"name": "add", "arguments": [1, 2]}), 422),
        "body is a list": (http.post("/call", json=[1, 2]), 422),
        "batch is an object": (http.post("/batch", json={"name": "add"}), 422),
        "batch item wrong type": (http.post("/batch", json=[{"name": "add"}, {"name": None}]), 422),
        "unknown tool": (http.post("/call", json={"name": "rm_rf", "arguments": {}}), 404),
        "mistyped argument": (http.post("/call", json={"name": "add", "arguments": {"firstNumber": "x",
                                                                                     "secondNumber": 1}}), 422),
        "oversized body": (http.post("/call", json={"name": "add", "arguments": {"x": "a" * 3_000_000}}), 413),
        "oversized chunked body": (
            http.post("/call", content=iter([b'{"name": "add", "arguments": {"x": "'] + [b"a" * 65536] * 48 + [b'"}}']),
                      headers={"content-type": "application/json"}),
            413,
        ),
        "unknown route": (http.get("/admin"), 404),
        "wrong method": (http.get("/call"), 405),
        "execute: wrong types": (http.post("/execute", json={"env": 1, "timeout": -3}), 422),
    }
    for what, (r, status) in bad.items():
        assert r.status_code == status, (what, r.status_code, r.text)
        body = r.json()
        assert isinstance(body.get("error"), str) and body["error"] and "Traceback" not in r.text, what

    # Hostile code on /execute. The infinite loop runs while a good call is answered at once.
    with cf.ThreadPoolExecutor(2) as pool:
        t0 = time.monotonic()
        loop = pool.submit(http.post, "/execute", json={"env": "while True:\n    pass", "timeout": 2})
        time.sleep(0.3)
        quick = http.post("/call", json={"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}})
        quick_latency = time.monotonic() - t0
        loop = loop.result().json()
    assert quick.json()["content"] == "3" and quick_latency < 1.5
    assert loop["ok"] is False and loop["timed_out"] is True and "timed out" in loop["error"]

    hostile = {
        "memory bomb": "x = []\nwhile True:\n    x.append(' ' * 10**7)",
        "one huge allocation": "x = bytearray(10**11)",
        "fork": "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)",
        "fork bomb": "import os\nwhile True:\n    os.fork()",
        "crash": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
        "hard exit": "import os\nos._exit(7)",
        "sys.exit": "import sys\nsys.exit(3)",
        "output flood": "while True:\n    print('y' * 1000)",
        "read server state": "import os\nresult = sorted(os.environ)",
    }
    results = {}
    for what, code in hostile.items():
        r = http.post("/execute", json={"env": code, "timeout": 2})
        assert r.status_code == 200, (what, r.text)
        results[what] = r.json()
    for what in ("memory bomb", "one huge allocation"):
        assert not results[what]["ok"] and "MemoryError" in results[what]["error"], results[what]
    for what in ("fork", "fork bomb"):
        assert not results[what]["ok"] and "BlockingIOError" in results[what]["error"], results[what]
    assert not results["crash"]["ok"] and "SIGSEGV" in results["crash"]["error"]
    assert not results["hard exit"]["ok"] and "code 7" in results["hard exit"]["error"]
    assert not results["sys.exit"]["ok"] and "SystemExit" in results["sys.exit"]["error"]
    flood = results["output flood"]
    assert not flood["ok"] and flood["timed_out"] and len(flood["output"]) <= 64 * 1024
    # The job's environment is the worker's empty one, not the server's.
    assert set(results["read server state"]["result"]) <= {"PATH", "LANG", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}

    # Afterwards: the same server process answers good calls correctly.
    assert server.alive()
    good = http.post("/call", json={"name": "divide", "arguments": {"numerator": 1, "denominator": 4}})
    assert good.status_code == 200 and good.json() == {"ok": True, "content": "0.25", "error": None}
    ok = http.post("/execute", json={"env": "def add(a, b):\n    print('adding')\n    return a + b",
                                     "call": "add(20, 22)"}).json()
    assert ok["ok"] and ok["result"] == 42 and ok["output"] == "adding\n"
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["workers"] >= 1


def test_token_required_and_non_loopback_refused(tmp_path, monkeypatch):
    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "mentor.cli", "serve", "tools", "--host", "0.0.0.0", "--port", str(port)],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "MENTOR_TOOL_TOKEN": ""},
    )
    assert refused.returncode == 2 and "requires a token" in " ".join(refused.stderr.split())

    token = "s3cret-token"
    with ServerProcess.start(["serve", "tools"], env={"MENTOR_TOOL_TOKEN": token}) as srv:
        call = {"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}
        assert httpx.get(srv.url + "/health").status_code == 200  # liveness stays open
        missing = httpx.post(srv.url + "/call", json=call)
        wrong = httpx.post(srv.url + "/call", json=call, headers={"Authorization": "Bearer nope"})
        right = httpx.post(srv.url + "/call", json=call, headers={"Authorization": f"Bearer {token}"})
        assert missing.status_code == 401 and "missing bearer token" in missing.json()["error"]
        assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["error"]
        assert right.status_code == 200 and right.json()["content"] == "3"
        assert httpx.get(srv.url + "/tools").status_code == 401
        disabled = httpx.post(srv.url + "/execute", json={"env": "1"}, headers={"Authorization": f"Bearer {token}"})
        assert disabled.status_code == 404 and "--enable-execute" in disabled.json()["error"]
        monkeypatch.setenv("MENTOR_TOOL_TOKEN", token)
        assert call_remote(srv.url, "add", {"firstNumber": 2, "secondNumber": 2}).content == "4"
