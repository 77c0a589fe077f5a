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


_TOKEN_ON_ARGV = ("--token puts the secret on the command line, where every local process can read it "
                  "(/proc/<pid>/cmdline); use --token-file FILE (mode 600) or ${var} instead")


def _token(cli_token: str | None, token_file: Path | None, host: str, var: str) -> str | None:
    """The server's bearer token from ``--token-file`` or ``$var``; refuse ``--token`` and a
    non-loopback ``host`` without a token (exit code 2)."""
    from mentor.serve.common import TokenError, is_loopback, read_token

    if cli_token is not None:
        err.print(f"[red]{_TOKEN_ON_ARGV.replace('${var}', '$' + var)}[/red]")
        raise typer.Exit(2)
    try:
        token = read_token(token_file, var)
    except TokenError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    if not is_loopback(host) and not token:
        err.print(f"[red]refusing to bind {host}: a non-loopback address requires a token "
                  f"(--token-file FILE or ${var})[/red]")
        raise typer.Exit(2)
    return token


@app.command("tools")
def tools(
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback requires a token."),
    port: int = typer.Option(8100, help="Port to listen on."),
    token_file: Path = typer.Option(
        None, help="Require 'Authorization: Bearer TOKEN', TOKEN being this file's first line (or $MENTOR_TOOL_TOKEN)."
    ),
    token: str = typer.Option(None, hidden=True, help="Refused: a secret on the command line leaks."),
    enable_execute: bool = typer.Option(
        False, "--enable-execute", help="Serve POST /execute: run posted Python code in sandboxed workers."
    ),
) -> None:
    """Serve the tool registry over HTTP: /health, /tools, /call, /batch (and /execute)."""
    from mentor.serve.common import run_server
    from mentor.serve.tools_app import create_tools_app

    token = _token(token, token_file, host, "MENTOR_TOOL_TOKEN")
    app_ = create_tools_app(token=token, enable_execute=enable_execute)
    err.print(f"tool server on http://{host}:{port} (execute {'on' if enable_execute else 'off'}, "
              f"auth {'on' if token else 'off'})")
    run_server(app_, host, port)


@app.command("retriever")
def retriever(
    corpus: Path = typer.Option(..., help="FlashRAG JSONL (id, contents), title/text JSONL, or a HotpotQA file."),
    index: IndexKind = typer.Option(IndexKind.bm25, help="bm25 (bm25s) or dense (embeddings + faiss-cpu)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback requires a token."),
    port: int = typer.Option(8200, help="Port to listen on."),
    index_dir: Path = typer.Option(None, help="Directory to load a saved index from / save the built one to."),
    model: str = typer.Option(
        None, help="Dense: a sentence-transformers model (Hub id or directory), e.g. intfloat/e5-base-v2 (the "
                   "paper's); default $MENTOR_EMBEDDING_MODEL or the bundled all-MiniLM-L6-v2."),
    faiss_index: Path = typer.Option(
        None, help="Dense: a prebuilt faiss index over --corpus (one vector per line, in order), e.g. FlashRAG's "
                   "e5_Flat.index of wiki18_100w.jsonl; only queries are embedded."),
    query_prefix: str = typer.Option(None, help="Put before every query (default: 'query: ' for e5 models, else none)."),
    passage_prefix: str = typer.Option(
        None, help="Put before every passage embedded (default: 'passage: ' for e5 models, else none)."),
    token_file: Path = typer.Option(
        None, help="Require 'Authorization: Bearer TOKEN', TOKEN being this file's first line "
                   "(or $MENTOR_RETRIEVER_TOKEN)."
    ),
    token: str = typer.Option(None, hidden=True, help="Refused: a secret on the command line leaks."),
) -> None:
    """Serve passage retrieval over a corpus: /health, /search, /batch_search."""
    from mentor.io import DataError
    from mentor.serve.common import run_server
    from mentor.serve.retriever import build_or_load_index, create_retriever_app

    token_ = _token(token, token_file, host, "MENTOR_RETRIEVER_TOKEN")
    try:
        idx, info = build_or_load_index(corpus, index.value, index_dir, model=model, show_progress=True, log=err.print,
                                        faiss_index=faiss_index, query_prefix=query_prefix,
                                        passage_prefix=passage_prefix)
    except (DataError, RuntimeError, ValueError, OSError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    described = f"{index.value}" + (f", {info['model']}" if info.get("model") else "")
    err.print(f"retriever ({described}, {len(idx.passages)} passages, ready in {info['seconds']} s) "
              f"on http://{host}:{port} (auth {'on' if token_ else 'off'})")
    sys.stdout.flush()
    run_server(create_retriever_app(idx, info, token=token_), host, port)
