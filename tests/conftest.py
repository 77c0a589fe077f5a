import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = Path(os.environ.get("MENTOR_SHARED_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    """``../shared/benchmarks`` (tests skip cleanly when it is absent)."""
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The bundled default model, converted and cached once."""
    from mentor.models import ensure_default_model

    return str(ensure_default_model(progress=False))


# ----------------------------------------------------------------------------- skip policy
#: Tests allowed to skip under MENTOR_STRICT_SKIPS=1 (node-id prefix -> why). Empty: `scripts/test`
#: installs every optional package the suite uses (bfcl-eval, faiss + the bundled MiniLM) and the
#: shared benchmark data must be present, so in CI any skip means a test silently did not run.
ALLOWED_SKIPS: dict[str, str] = {}


def strict_skips() -> bool:
    return os.environ.get("MENTOR_STRICT_SKIPS", "") not in ("", "0")


def _allowed(nodeid: str) -> bool:
    return any(nodeid.startswith(prefix) for prefix in ALLOWED_SKIPS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With MENTOR_STRICT_SKIPS=1 (set by scripts/test) a skip not in ALLOWED_SKIPS fails the test."""
    outcome = yield
    rep = outcome.get_result()
    if not (rep.skipped and strict_skips()) or hasattr(rep, "wasxfail") or _allowed(item.nodeid):
        return
    reason = (rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)).removeprefix("Skipped: ")
    rep.outcome = "failed"
    rep.longrepr = (
        f"unexpected skip under MENTOR_STRICT_SKIPS=1: {reason}\n"
        "(install what scripts/test installs and provide ../shared/benchmarks, or add the test to "
        "ALLOWED_SKIPS in tests/conftest.py with the reason)"
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_path) -> str:
    """A tiny random Llama (2 layers, hidden 32) with the bundled SmolLM2 tokenizer and its
    compact tool template: a real Hugging Face model directory that trains in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mentor.models import COMPACT_MODEL, load_tokenizer

    tok = load_tokenizer(COMPACT_MODEL)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def openai_app(chat):
    """A scripted OpenAI-compatible server app: ``GET /v1/models`` (empty) and ``POST
    /v1/chat/completions`` answered by ``chat(body)`` (plain or async; a dict or a Response)."""
    import inspect

    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def completions(req: Request):
        out = chat(await req.json())
        return await out if inspect.isawaitable(out) else out

    return app


@contextlib.contextmanager
def loopback_server(app):
    """Serve an ASGI ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yield the port."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the loopback server did not start within 20 s"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
