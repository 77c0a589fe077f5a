"""A task kind added from outside the package, as docs/architecture.md describes: this one
file plus ``mentor.tasks.register(SpellTask())``. Items ask for a word spelled backwards; the
answer is the final ``\\boxed{}``; no tools."""

from mentor.tasks import Benchmark, Item, Task


class SpellTask(Task):
    name = "spell"
    label = "Spelling"
    toolset = None  # no tools
    question_field = "word"
    domain = "out-of-domain"

    def detect(self, record):
        return "word" in record

    def names(self):
        return ["spell:demo"]

    def load(self, key, limit):
        if key != "spell:demo":
            return None
        items = [Item(id=str(i), question=f"Spell {w} backwards.", gold=w[::-1]) for i, w in enumerate(["hello", "tools"])]
        return Benchmark("spell:demo", self.name, items, source="inline", domain=self.domain).limit(limit)

    def from_file(self, path, rows, name, limit):
        items = [Item(id=str(o.get("id", i)), question=f"Spell {o['word']} backwards.", gold=o["word"][::-1]) for i, o in rows]
        return Benchmark(name or path.stem, self.name, items[:limit] if limit else items, source=str(path), domain=self.domain)

    def score(self, prediction, gold):
        return prediction is not None and prediction.strip().lower() == str(gold).lower()
