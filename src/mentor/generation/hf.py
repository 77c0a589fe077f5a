"""Batched generation with a transformers model and its chat template (CPU or GPU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mentor.generation.loop import Generation, Sampling, parse_assistant
from mentor.models import default_device, load


def render_chat(tokenizer: Any, conversation: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                **chat_template_kwargs: Any) -> str:
    """The prompt text of ``conversation`` offering ``tools``, by the tokenizer's chat template
    (what every local generator sends to its model)."""
    clean = [{k: v for k, v in m.items() if k != "raw"} for m in conversation]
    return tokenizer.apply_chat_template(clean, tools=tools, tokenize=False, add_generation_prompt=True,
                                         **chat_template_kwargs)


class HFGenerator:
    """Batched generation with a transformers model and its chat template (left padding)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, chat_template_kwargs: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.chat_template_kwargs = chat_template_kwargs or {}
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_name(cls, name: str | None = None, batch_size: int = 8, dtype: str = "float32",
                  device: str | None = None) -> HFGenerator:
        """The model on ``device``; None: the GPU when there is one (``mentor eval``, ``mentor chat``
        and the transformers teacher on a GPU machine), else the CPU."""
        model, tok = load(name, dtype=dtype, device=device or default_device())
        return cls(model, tok, batch_size=batch_size)

    def render(self, conversation: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        return render_chat(self.tokenizer, conversation, tools, **self.chat_template_kwargs)

    def generate(
        self, conversations: Sequence[list[dict[str, Any]]], tools: list[dict[str, Any]] | None, sampling: Sampling
    ) -> list[Generation]:
        return self.generate_rendered([self.render(c, tools) for c in conversations], sampling)

    def generate_rendered(self, texts: Sequence[str], sampling: Sampling) -> list[Generation]:
        """Batched generation from prompt texts already rendered with the chat template (used when
        each conversation offers its own tools, e.g. BFCL)."""
        import torch

        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Generation | None] = [None] * len(texts)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "do_sample": not sampling.greedy}
        if not sampling.greedy:
            # top_k=0 turns transformers' default top-k (50) off: only the settings asked for apply
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or 0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            with torch.inference_mode():
                gen = self.model.generate(**enc, pad_token_id=pad, **kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                n = len(ids)
                for k, t in enumerate(ids):
                    if t == eos:
                        n = k + 1
                        break
                else:
                    while n and ids[n - 1] == pad:
                        n -= 1
                text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
                out[i] = Generation(parse_assistant(text), tokens=n)
        return [g for g in out if g is not None]
