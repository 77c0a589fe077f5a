"""``mentor serve tools`` and ``mentor serve retriever``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="Servers: the tool execution server and the retrieval server (loopback by default).",
    no_args_is_help=True,
)
err = Console(stderr=True)


class IndexKind(str, Enum):
    bm25 = "bm25"
    dense = "dense"


@app.command("tools")
def tools(
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback requires --token."),
    port: int = typer.Option(8100, help="Port to listen on."),
    token: str = typer.Option(
        None, envvar="MENTOR_TOOL_TOKEN", help="Require 'Authorization: Bearer TOKEN' (env MENTOR_TOOL_TOKEN)."
    ),
    enable_execute: bool = typer.Option(
        False, "--enable-execute", help="Serve POST /execute: run posted Python code in sandboxed workers."
    ),
) -> None:
    """Serve the tool registry over HTTP: /health, /tools, /call, /batch (and /execute)."""
    from mentor.serve.common import is_loopback, run_server
    from mentor.serve.tools_app import create_tools_app

    if not is_loopback(host) and not token:
        err.print(f"[red]refusing to bind {host}: a non-loopback address requires --token "
                  "(or MENTOR_TOOL_TOKEN)[/red]")
        raise typer.Exit(2)
    app_ = create_tools_app(token=token, enable_execute=enable_execute)
    err.print(f"tool server on http://{host}:{port} (execute {'on' if enable_execute else 'off'}, "
              f"auth {'on' if token else 'off'})")
    run_server(app_, host, port)


@app.command("retriever")
def retriever(
    corpus: Path = typer.Option(..., help="FlashRAG JSONL (id, contents), title/text JSONL, or a HotpotQA file."),
    index: IndexKind = typer.Option(IndexKind.bm25, help="bm25 (bm25s) or dense (embeddings + faiss-cpu)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8200, help="Port to listen on."),
    index_dir: Path = typer.Option(None, help="Directory to load a saved index from / save the built one to."),
) -> None:
    """Serve passage retrieval over a corpus: /health, /search, /batch_search."""
    from mentor.io import DataError
    from mentor.serve.common import is_loopback, run_server
    from mentor.serve.retriever import build_or_load_index, create_retriever_app

    if not is_loopback(host):
        err.print(f"[yellow]warning: the retriever on {host} is reachable from other hosts[/yellow]")
    try:
        idx, info = build_or_load_index(corpus, index.value, index_dir, show_progress=True, log=err.print)
    except (DataError, RuntimeError, ValueError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    err.print(f"retriever ({index.value}, {len(idx.passages)} passages, ready in {info['seconds']} s) "
              f"on http://{host}:{port}")
    sys.stdout.flush()
    run_server(create_retriever_app(idx, info), host, port)
