"""Servers: the tool execution server (``mentor serve tools``) and the retrieval server
(``mentor serve retriever``). Heavy imports (FastAPI, bm25s, faiss) happen in the submodules.

* ``mentor.serve.tools_app.create_tools_app(...)`` -> FastAPI app (``/call``, ``/batch``, ``/execute``)
* ``mentor.serve.sandbox.SandboxPool`` -> sandboxed worker processes for ``/execute``
* ``mentor.serve.retriever.build_or_load_index`` / ``create_retriever_app`` / ``DenseIndex``
* ``mentor.serve.corpus.load_corpus`` / ``hotpotqa_passages`` / ``supporting_titles`` / ``recall_at_k``
"""

#: the index kinds of the retrieval server (``mentor serve retriever --index``)
INDEX_KINDS = ("bm25", "dense")
