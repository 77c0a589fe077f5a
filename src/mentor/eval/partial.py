"""The records of an interrupted evaluation, kept so that a re-run does not redo them.

An append-only JSONL next to the result file: a header line with the run's key (benchmark,
model, settings), then one ``{"index", "id", "record"}`` line per finished item. A file with
another key (other settings, another model) is started afresh; a torn last line (a kill
mid-write) is dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mentor.io import append_jsonl, repair_jsonl

#: the settings that make two runs of one benchmark interchangeable item by item
_KEY_SETTINGS = ("tools", "max_turns", "max_new_tokens", "temperature", "top_p", "decoding", "scorer", "seed", "limit",
                 "retriever", "top_k")


def partial_key(bench: Any, model: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"benchmark": bench.name, "source": bench.source, "model": model, "n": len(bench.items),
            **{k: settings.get(k) for k in _KEY_SETTINGS}}


class PartialRecords:
    def __init__(self, path: Path, key: dict[str, Any]):
        self.path, self.key = path, key

    @classmethod
    def at(cls, partial: str | os.PathLike | None, out: str | os.PathLike | None, key: dict[str, Any]) -> PartialRecords | None:
        """At ``partial``, else ``<out>.partial.jsonl``; ``None`` when neither is given."""
        if partial is None and out is None:
            return None
        return cls(Path(partial) if partial is not None else Path(str(out) + ".partial.jsonl"), key)

    def load(self, items: Sequence[Any]) -> dict[int, dict[str, Any]]:
        """The finished records by item index (items must still have the same ids)."""
        done: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            repair_jsonl(self.path)
            lines = [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
            if lines and lines[0].get("partial_of") == json.loads(json.dumps(self.key, default=str)):
                for row in lines[1:]:
                    i = row["index"]
                    if 0 <= i < len(items) and items[i].id == row["id"]:
                        done[i] = row["record"]
                return done
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        append_jsonl(self.path, {"partial_of": self.key})
        return done

    def append(self, index: int, record: dict[str, Any]) -> None:
        append_jsonl(self.path, {"index": index, "id": record["id"], "record": record})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
