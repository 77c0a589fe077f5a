"""llama.cpp rollouts: the CPU analogue of TRL's vLLM generation (issue #11).

On a CPU, sampling with transformers' ``generate`` dominates a GRPO step (it re-encodes the
prompt and completion at every tool iteration and decodes a few tokens per second per stream).
llama.cpp (``llama-cpp-python``) decodes the same model an order of magnitude faster and keeps
the prompt's KV cache between calls. This module

* exports a Hugging Face causal LM's *current* weights into a GGUF file (``GGUFWeights``): the
  first export copies a template GGUF's metadata and tokenizer (the bundled SmolLM2's, or a GGUF
  the user made with llama.cpp's ``convert_hf_to_gguf.py``) and writes every tensor; later
  exports overwrite the tensor data in place (same names, shapes and types), so a weight sync
  costs one pass over the weights, not a conversion;
* samples completions from token ids with llama.cpp (``LlamaCppEngine``), re-loading the GGUF
  after each optimizer step (``sync``), like TRL's ``vllm_generation.sync_weights``.

What departs from sampling the training policy exactly (documented in docs/training.md): the
matrices are exported in ``weight_type`` (default ``bf16``: the rounding of bf16 inference;
``f32`` is exact but decodes slower) and llama.cpp's kernels differ numerically from PyTorch's,
so the rollouts come from a policy a rounding error away from the trained one (vLLM in bf16
does the same; TRL corrects it with importance sampling only for vLLM, and mentor does not).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mentor.generation.hf import render_chat
from mentor.generation.loop import Generation, Sampling, parse_assistant

log = logging.getLogger(__name__)

__all__ = ["GGUFWeights", "LlamaCppEngine", "LlamaCppError", "LlamaCppGenerator", "WEIGHT_TYPES", "effective_state_dict",
           "gguf_tensors", "sampling_of"]

#: Tensor types a sync may write (2-D weights; 1-D norms stay float32).
WEIGHT_TYPES = ("f32", "f16", "bf16", "q8_0")

#: Architectures whose HF -> GGUF mapping is implemented: gguf's MODEL_ARCH name and whether
#: llama.cpp expects q/k rows permuted (convert_hf_to_gguf.py ``LlamaModel.permute``).
_ARCHS = {"llama": ("LLAMA", True), "qwen2": ("QWEN2", False), "qwen3": ("QWEN3", False)}


class LlamaCppError(RuntimeError):
    """The llama.cpp backend cannot run for this model or installation (the message says what to do)."""


def _permute(w: Any, n_head: int) -> Any:
    """convert_hf_to_gguf.py's ``LlamaModel.permute``: HF's rotary layout -> llama.cpp's."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def effective_state_dict(model: Any, adapted_only: bool = False) -> dict[str, Any]:
    """The weights ``model`` computes with, as float32 CPU tensors under plain HF names: for a PEFT
    model each LoRA layer's ``base + delta`` (the adapter is not merged into the model, so
    training continues unchanged), without the adapter's own parameters. ``adapted_only``: only
    the LoRA layers' weights (the rest of a PEFT model is frozen)."""
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    state: dict[str, Any] = {}
    with torch.no_grad():
        for name, mod in inner.named_modules():
            base = getattr(mod, "base_layer", None)
            if base is None or not hasattr(mod, "get_delta_weight"):
                continue
            w = base.weight.detach().float()
            if not getattr(mod, "merged", False):
                for adapter in mod.active_adapters:
                    if adapter in getattr(mod, "lora_A", {}):
                        w = w + mod.get_delta_weight(adapter).float()
            state[f"{name}.weight"] = w
        if adapted_only and state:
            return state
        for name, p in inner.state_dict().items():
            if "lora_" in name or ".base_layer." in name or name in state:
                continue
            state[name] = p.detach().float()
    return state


def gguf_tensors(state: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """HF tensors (``state``) -> GGUF tensor name -> float32 torch tensor in llama.cpp's layout."""
    import gguf

    arch = getattr(config, "model_type", None)
    if arch not in _ARCHS:
        raise LlamaCppError(f"generation_backend llama_cpp supports {sorted(_ARCHS)} models, not {arch!r}")
    arch_name, permute = _ARCHS[arch]
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch_name), config.num_hidden_layers)
    out: dict[str, Any] = {}
    for hf_name, t in state.items():
        if getattr(config, "tie_word_embeddings", False) and hf_name == "lm_head.weight":
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise LlamaCppError(f"no GGUF name for the {arch} tensor {hf_name!r}")
        a = t.float()
        if permute and name.endswith("attn_q.weight"):
            a = _permute(a, config.num_attention_heads)
        elif permute and name.endswith("attn_k.weight"):
            a = _permute(a, config.num_key_value_heads)
        out[name] = a
    return out


def _encode(t: Any, weight_type: str) -> tuple[Any, Any]:
    """(numpy array to write, GGMLQuantizationType) for one float32 torch tensor. The encodings
    are done in torch: gguf-py's numpy bf16/q8_0 quantizers took ~40 s for the 135M model."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType as Q

    if t.ndim < 2 or weight_type == "f32":
        return t.contiguous().numpy(), Q.F32
    if weight_type == "f16":
        return t.to(torch.float16).numpy(), Q.F16
    if weight_type == "bf16":
        raw = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8)
        return raw.reshape(t.shape[0], -1), Q.BF16
    # q8_0 as ggml's quantize_row_q8_0_ref: blocks of 32, d = amax / 127 (fp16), q = round(x / d)
    blocks = t.reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.round(blocks * inv).clamp(-128, 127).to(torch.int8)
    raw = np.concatenate([d.to(torch.float16).numpy().view(np.uint8), q.numpy().view(np.uint8)], axis=1)
    return raw.reshape(t.shape[0], -1), Q.Q8_0


_PREFIX = "mentor-rollout-"


def sweep_stale(where: Path) -> list[Path]:
    """Remove the private GGUF directories (``mentor-rollout-PID-*``) of processes that no longer
    run (a killed training run cannot clean its own; each holds 145-540 MB of /dev/shm)."""
    removed = []
    for d in where.glob(f"{_PREFIX}*-*"):
        try:
            pid = int(d.name[len(_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except PermissionError:  # another user's live process
            continue
    return removed


def _hparams(config: Any, arch: str) -> dict[str, Any]:
    """GGUF hyperparameters of a llama-family HF ``config`` (convert_hf_to_gguf.py's keys)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    out = {f"{arch}.context_length": config.max_position_embeddings, f"{arch}.embedding_length": config.hidden_size,
           f"{arch}.block_count": config.num_hidden_layers, f"{arch}.feed_forward_length": config.intermediate_size,
           f"{arch}.attention.head_count": heads,
           f"{arch}.attention.head_count_kv": getattr(config, "num_key_value_heads", None) or heads,
           f"{arch}.attention.layer_norm_rms_epsilon": config.rms_norm_eps, f"{arch}.rope.dimension_count": head_dim,
           f"{arch}.vocab_size": config.vocab_size}
    if rope is not None:
        out[f"{arch}.rope.freq_base"] = float(rope)
    return out


def _resized(shapes: Mapping[str, tuple[int, ...]], tensors: Mapping[str, Any], blocks: int) -> dict[str, tuple]:
    """The template's tensor list for ``blocks`` layers (its per-layer tensors repeated) with the
    shapes of ``tensors``: a template of another size lends its names and order, not its shapes."""
    per_block = [n[len("blk.0."):] for n in shapes if n.startswith("blk.0.")]
    names = [n for n in shapes if not n.startswith("blk.")] + [f"blk.{i}.{n}" for i in range(blocks) for n in per_block]
    return {n: tuple(tensors[n].shape) if n in tensors else () for n in names}


@dataclass
class _Slot:
    offset: int
    nbytes: int
    shape: tuple[int, ...]


class GGUFWeights:
    """One GGUF file at ``path`` holding a model's current weights (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, template: str | os.PathLike, weight_type: str = "bf16"):
        if weight_type not in WEIGHT_TYPES:
            raise LlamaCppError(f"llama_cpp weight_type must be one of {WEIGHT_TYPES}, got {weight_type!r}")
        self.path, self.template, self.weight_type = Path(path), Path(template), weight_type
        self._slots: dict[str, _Slot] = {}

    @property
    def written(self) -> bool:
        return bool(self._slots)

    def write(self, tensors: Mapping[str, Any], config: Any = None) -> Path:
        """Write ``tensors`` (from ``gguf_tensors``): the whole file the first time (every tensor),
        then in place (any subset: those that changed). ``config`` (the HF config) overrides the
        template's hyperparameters when they differ: a template then only lends its tokenizer
        (e.g. the bundled SmolLM2's for any size of model with that tokenizer)."""
        if not self._slots:
            self._write_new(tensors, config)
        else:
            self._overwrite(tensors)
        return self.path

    def _template_fields(self) -> tuple[str, list[tuple[str, Any, Any, Any]], dict[str, tuple[int, ...]]]:
        import gguf

        reader = gguf.GGUFReader(str(self.template))
        arch = reader.fields["general.architecture"].contents()
        kv = []
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
                continue
            sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            kv.append((key, field.contents(), field.types[0], sub))
        shapes = {t.name: tuple(int(x) for x in reversed(t.shape)) for t in reader.tensors}
        return arch, kv, shapes

    def _write_new(self, tensors: Mapping[str, Any], config: Any = None) -> None:
        import gguf

        arch, kv, shapes = self._template_fields()
        hp = _hparams(config, arch) if config is not None else {}
        vocab = next((len(val) for key, val, _, _ in kv if key == "tokenizer.ggml.tokens"), None)
        if hp and vocab is not None and hp[f"{arch}.vocab_size"] != vocab:
            raise LlamaCppError(f"the model's vocabulary ({hp[f'{arch}.vocab_size']} tokens) is not the tokenizer of "
                                f"the GGUF template {self.template} ({vocab}); give llama_cpp.template a GGUF of this "
                                "model (llama.cpp's convert_hf_to_gguf.py)")
        if any(v != val for key, val, _, _ in kv for k, v in hp.items() if k == key):
            kv = [(key, hp.get(key, val), vtype, sub) for key, val, vtype, sub in kv]
            shapes = _resized(shapes, tensors, hp[f"{arch}.block_count"])
        missing = sorted(set(shapes) - set(tensors))
        extra = sorted(set(tensors) - set(shapes))
        bad = sorted(n for n in set(shapes) & set(tensors) if tuple(tensors[n].shape) != shapes[n])
        if missing or extra or bad:
            raise LlamaCppError(f"the model's weights do not fit the GGUF template {self.template} "
                                f"(missing {missing[:3]}, extra {extra[:3]}, other shapes {bad[:3]}); give "
                                "llama_cpp.template a GGUF of this architecture (llama.cpp's convert_hf_to_gguf.py)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        writer = gguf.GGUFWriter(str(tmp), arch)
        for key, val, vtype, sub in kv:
            writer.add_key_value(key, val, vtype, sub_type=sub)
        sizes = []
        for name in shapes:  # the template's order
            data, qtype = _encode(tensors[name], self.weight_type)
            writer.add_tensor(name, data, raw_dtype=qtype)
            sizes.append((name, data.nbytes, tensors[name].shape))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        pad = writer.data_alignment
        total = sum((n + pad - 1) // pad * pad for _, n, _ in sizes)
        offset = tmp.stat().st_size - total
        for name, n, shape in sizes:
            self._slots[name] = _Slot(offset, n, tuple(shape))
            offset += (n + pad - 1) // pad * pad
        tmp.replace(self.path)

    def _overwrite(self, tensors: Mapping[str, Any]) -> None:
        unknown = sorted(set(tensors) - set(self._slots))
        if unknown:
            raise LlamaCppError(f"{self.path}: no tensors {unknown[:3]} in the file written first")
        with open(self.path, "r+b") as f:
            for name in tensors:
                slot = self._slots[name]
                data, _ = _encode(tensors[name], self.weight_type)
                if data.nbytes != slot.nbytes:
                    raise LlamaCppError(f"{name}: {data.nbytes} bytes to write into a {slot.nbytes}-byte slot")
                f.seek(slot.offset)
                f.write(data.tobytes())


def sampling_of(gc: Any) -> Sampling:
    """The ``Sampling`` of an HF ``GenerationConfig`` (TRL's rollout settings). llama.cpp's extra
    samplers (min_p, repetition penalty) are not mapped: a config that sets them is refused."""
    if (getattr(gc, "min_p", None) or 0.0) > 0 or (getattr(gc, "repetition_penalty", None) or 1.0) != 1.0:
        raise LlamaCppError("generation_backend llama_cpp maps temperature, top_p and top_k only; "
                            "unset grpo.min_p / grpo.repetition_penalty or use the transformers backend")
    if not getattr(gc, "do_sample", True):
        return Sampling(temperature=0.0, max_new_tokens=int(gc.max_new_tokens or 512))
    return Sampling(temperature=float(1.0 if gc.temperature is None else gc.temperature),
                    top_p=float(1.0 if gc.top_p is None else gc.top_p), top_k=int(gc.top_k) if gc.top_k else None,
                    max_new_tokens=int(gc.max_new_tokens or 512))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def sampler_seed(seed: int, step: int | None, call: int) -> int:
    """The 32-bit seed of the ``call``-th sampled decode after the sync at ``step``: a function of
    the three only (not of how many calls the engine made before), so resuming at a step replays it."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}/{step}/{call}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class LlamaCppEngine:
    """Samples completions of token-id prompts with llama.cpp from a model's current weights.

    ``sync(model)`` exports the weights (``GGUFWeights``) and re-loads llama.cpp. ``complete_batch``
    decodes up to ``n_seq`` prompts together, one llama.cpp sequence each, in one shared
    ("unified") KV cache: every decode step feeds one token per live sequence as a single batch
    (a 4-row matrix product costs little more than one row on a CPU), and prompt tokens already
    in the cache are not computed again -- a prompt reuses the longest prefix it shares with a
    sequence's cached tokens (a tool iteration continues its own rollout's cache) or with another
    prompt of the same call (a GRPO group's rollouts share one prefill of their question).
    """

    def __init__(self, template: str | os.PathLike, weight_type: str = "bf16", n_ctx: int = 8192,
                 n_threads: int | None = None, seed: int = 0, gguf_path: str | os.PathLike | None = None,
                 n_seq: int = 8, n_batch: int = 512, in_place: bool = True, mmap: bool = True):
        try:
            import llama_cpp  # noqa: F401
        except ImportError as e:
            raise LlamaCppError("generation_backend: llama_cpp needs llama-cpp-python "
                                "(scripts/setup installs it; or pip install llama-cpp-python)") from e
        self._tmp = None
        if gguf_path is None:  # a private file, in memory where /dev/shm exists; removed by close()
            shm = Path("/dev/shm")
            where = shm if shm.is_dir() else Path(tempfile.gettempdir())
            sweep_stale(where)
            self._tmp = tempfile.TemporaryDirectory(prefix=f"{_PREFIX}{os.getpid()}-", dir=where)
            gguf_path = Path(self._tmp.name) / "policy.gguf"
        self.weights = GGUFWeights(gguf_path, template, weight_type)
        self.n_ctx, self.seed, self.n_seq, self.n_batch = n_ctx, seed, max(1, n_seq), n_batch
        # like torch: OMP_NUM_THREADS where set (e.g. two jobs sharing the cores), else every core
        self.n_threads = n_threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, os.cpu_count() or 1)
        self.synced_step: int | None = None
        # whether a sync may overwrite the mapped GGUF under the loaded model (None: not yet probed)
        self.in_place: bool | None = None if in_place and mmap else False
        self.mmap = mmap
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._cached: list[list[int]] = []  # per sequence id: the tokens whose keys/values are in the cache
        # sampled (non-greedy) decode calls since the last sync: with ``seed`` and the synced step they
        # seed the sampler, so a run resumed from a checkpoint draws the rollouts an uninterrupted
        # run draws (greedy calls, e.g. the probe's between two steps, do not count)
        self._sampled = 0
        self.stats = {"prefill_tokens": 0, "reused_tokens": 0, "decoded_tokens": 0}

    def sync(self, model: Any, step: int | None = None) -> None:
        """Export ``model``'s current weights and load them into llama.cpp.

        The first sync writes the GGUF and loads it (memory-mapped). Later syncs overwrite the
        changed tensors in that file in place: llama.cpp computes with the mapped pages, so the
        loaded model sees the new weights without a re-load (~0.14 s per step for the 135M model)
        once its KV cache is cleared. Whether it does is probed once (``_writes_visible``): a
        build that copies weights out of the file (llama.cpp's AMX or repacked kernels, a load
        without mmap) gets a re-load at every sync instead."""
        # a PEFT model trains only its LoRA layers: after the first export only those are rewritten
        frozen_rest = self.weights.written and hasattr(model, "get_base_model")
        tensors = gguf_tensors(effective_state_dict(model, adapted_only=frozen_rest), _config(model))
        if self._model is not None and self.weights.written and self._writes_visible(tensors):
            self.weights.write(tensors)
            self._forget()
        else:
            self.close(keep_file=True)
            self.weights.write(tensors, _config(model))
            self._load()
        self.synced_step = step
        self._sampled = 0

    def _writes_visible(self, tensors: Mapping[str, Any]) -> bool:
        """Whether the loaded model computes with the file's current bytes: the logits of a probe
        before and after zeroing one of ``tensors`` in the file must differ (the caller then writes
        every tensor, that one included). Probed once per engine."""
        if self.in_place is None:
            import numpy as np
            import torch

            name = next((n for n, t in tensors.items() if t.ndim == 2), None)
            if name is None:
                return False
            before = self._probe()
            self.weights.write({name: torch.zeros_like(tensors[name])})
            self.in_place = not np.array_equal(before, self._probe())
            if not self.in_place:
                log.info("llama.cpp does not compute with the mapped GGUF (weights copied at load): "
                         "re-loading at every sync")
        return bool(self.in_place)

    def _probe(self) -> Any:
        """The logits after a fixed 8-token input (the KV cache is cleared before and after)."""
        import llama_cpp
        import numpy as np

        self._forget()
        where = self._feed([(tok, pos, 0) for pos, tok in enumerate(range(1, 9))], logits=True)
        n_vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model.model)))
        ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, where[0])
        out = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()
        self._forget()
        return out

    def _forget(self) -> None:
        """Empty the KV cache (and the record of what it holds)."""
        self._ctx.kv_cache_clear()
        self._cached = [[] for _ in range(self.n_seq)]

    def _load(self) -> None:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        mp = llama_cpp.llama_model_default_params()
        # mapped: the file's pages are the weights (see sync); else read into llama.cpp's own buffers
        mp.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if self.mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        self._model = _internals.LlamaModel(path_model=str(self.weights.path), params=mp, verbose=False)
        cp = llama_cpp.llama_context_default_params()
        # one KV cache for all sequences (shared prefixes share cells), no longer than the model's context
        self.n_ctx = min(self.n_ctx, int(llama_cpp.llama_model_n_ctx_train(self._model.model)) or self.n_ctx)
        cp.n_ctx, cp.n_batch, cp.n_ubatch = self.n_ctx, self.n_batch, self.n_batch
        cp.n_seq_max, cp.kv_unified = self.n_seq, True
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.no_perf = True
        # llama.cpp's CPU flash attention rounds queries to f16; without it f32 weights decode as transformers does
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = _internals.LlamaContext(model=self._model, params=cp, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._cached = [[] for _ in range(self.n_seq)]

    def complete(self, prompt_ids: Sequence[int], sampling: Sampling, eos_ids: Sequence[int],
                 max_new_tokens: int | None = None) -> list[int]:
        """Continuation of ``prompt_ids`` sampled with ``sampling`` (greedy at temperature 0), at
        most ``max_new_tokens`` (default ``sampling.max_new_tokens``), ending with an EOS id when
        one was sampled."""
        return self.complete_batch([prompt_ids], sampling, eos_ids, None if max_new_tokens is None else [max_new_tokens])[0]

    def complete_batch(self, prompts: Sequence[Sequence[int]], sampling: Sampling, eos_ids: Sequence[int],
                       max_new_tokens: Sequence[int] | None = None) -> list[list[int]]:
        """``complete`` for each prompt, decoded together (``n_seq`` at a time)."""
        if self._ctx is None:
            raise LlamaCppError("LlamaCppEngine.complete before sync()")
        budgets = [sampling.max_new_tokens] * len(prompts) if max_new_tokens is None else list(max_new_tokens)
        out: list[list[int]] = []
        for start in range(0, len(prompts), self.n_seq):
            chunk = [list(p) for p in prompts[start:start + self.n_seq]]
            out += self._decode_group(chunk, sampling, set(eos_ids), budgets[start:start + self.n_seq])
        return out

    # -- one group of <= n_seq prompts -----------------------------------------------------------

    def _sampler(self, sampling: Sampling) -> Any:
        from llama_cpp import _internals

        s = _internals.LlamaSampler()
        if sampling.greedy:
            s.add_greedy()
            return s
        self._sampled += 1
        if sampling.top_k:
            s.add_top_k(int(sampling.top_k))
        if sampling.top_p < 1.0:
            s.add_top_p(float(sampling.top_p), 1)
        s.add_temp(float(sampling.temperature))
        s.add_dist(sampler_seed(self.seed, self.synced_step, self._sampled))
        return s

    def _assign(self, prompts: list[list[int]]) -> list[tuple[int, int, int | None]]:
        """Per prompt: (sequence id, tokens reused from its own cache, or from the prompt ``src``
        of this group that it shares a longer prefix with -> (seq, n, src index))."""
        free = list(range(self.n_seq))
        plan: list[tuple[int, int, int | None]] = []
        for i, p in enumerate(prompts):
            limit = len(p) - 1  # the last prompt token is always decoded: its logits start sampling
            seq = max(free, key=lambda s: _common_prefix(self._cached[s], p))
            free.remove(seq)
            own = min(limit, _common_prefix(self._cached[seq], p))
            best, src = own, None
            for j in range(i):
                if plan[j][2] is None:  # only its first len - 1 tokens are in the cache before the last batch
                    n = min(limit, len(prompts[j]) - 1, _common_prefix(prompts[j], p))
                    if n > best:
                        best, src = n, j
            plan.append((seq, best, src))
        return plan

    def _decode(self, body: list[tuple[int, int, int]], tails: list[tuple[int, int, int]]) -> dict[int, int]:
        """Feed (token, position, sequence) items: ``body`` in batches of ``n_batch`` without
        logits, then ``tails`` (at most one per sequence) in one last batch with logits (only the
        last llama_decode's logits can be read). Returns sequence -> batch index of its logits."""
        for start in range(0, len(body), self.n_batch):
            self._feed(body[start:start + self.n_batch], logits=False)
        return self._feed(tails, logits=True) if tails else {}

    def _feed(self, items: list[tuple[int, int, int]], logits: bool) -> dict[int, int]:
        import llama_cpp

        b = self._batch.batch
        for k, (tok, pos, seq) in enumerate(items):
            b.token[k], b.pos[k], b.seq_id[k][0], b.n_seq_id[k], b.logits[k] = tok, pos, seq, 1, logits
        b.n_tokens = len(items)
        rc = int(llama_cpp.llama_decode(self._ctx.ctx, b))
        if rc != 0:
            self._forget()  # the bookkeeping no longer matches the cache: start afresh
            raise LlamaCppError(f"llama_decode returned {rc} (the KV cache of n_ctx={self.n_ctx} tokens is full? "
                                "raise llama_cpp.n_ctx or generate fewer sequences at once)")
        return {seq: k for k, (_, _, seq) in enumerate(items)}

    def _decode_group(self, prompts: list[list[int]], sampling: Sampling, eos: set[int],
                      budgets: list[int]) -> list[list[int]]:
        plan = self._assign(prompts)
        used = {seq for seq, _, _ in plan}
        for s in range(self.n_seq):  # idle sequences give their cells back
            if s not in used and self._cached[s]:
                self._ctx.kv_cache_seq_rm(s, 0, -1)
                self._cached[s] = []
        body: list[tuple[int, int, int]] = []
        for (seq, n, src), p in zip(plan, prompts, strict=True):  # prompts that copy nothing: all but the last token
            if src is None:
                self._ctx.kv_cache_seq_rm(seq, n, -1)
                body += [(p[k], k, seq) for k in range(n, len(p) - 1)]
        self._decode(body, [])
        body = []
        for (seq, n, src), p in zip(plan, prompts, strict=True):  # the others share a prefix with one of those
            if src is not None:
                self._ctx.kv_cache_seq_rm(seq, 0, -1)
                self._ctx.kv_cache_seq_cp(plan[src][0], seq, 0, n)
                body += [(p[k], k, seq) for k in range(n, len(p) - 1)]
        where = self._decode(body, [(p[-1], len(p) - 1, seq) for (seq, _, _), p in zip(plan, prompts, strict=True)])
        self.stats["reused_tokens"] += sum(n for _, n, _ in plan)
        self.stats["prefill_tokens"] += sum(len(p) for p in prompts) - sum(n for _, n, _ in plan)
        for (seq, _, _), p in zip(plan, prompts, strict=True):
            self._cached[seq] = list(p)

        sampler = self._sampler(sampling)
        outs: list[list[int]] = [[] for _ in prompts]
        live = [i for i in range(len(prompts)) if min(budgets[i], self.n_ctx - len(prompts[i])) > 0]
        try:
            while live:
                tails, nxt = [], []
                for i in live:
                    seq = plan[i][0]
                    tok = int(sampler.sample(self._ctx, where[seq]))
                    outs[i].append(tok)
                    pos = len(self._cached[seq])
                    if tok in eos or len(outs[i]) >= budgets[i] or pos + 1 >= self.n_ctx:
                        continue
                    tails.append((tok, pos, seq))
                    self._cached[seq].append(tok)
                    nxt.append(i)
                if tails:
                    where = self._decode([], tails)
                    self.stats["decoded_tokens"] += len(tails)
                live = nxt
        finally:
            sampler.close()
        return outs

    def close(self, keep_file: bool = False) -> None:
        """Free llama.cpp; unless ``keep_file`` (a sync re-loads it), remove a private GGUF."""
        for obj in (self._batch, self._ctx, self._model):
            if obj is not None:
                obj.close()
        self._batch = self._ctx = self._model = None
        self._cached = []
        if not keep_file and self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.weights = GGUFWeights(self.weights.path, self.weights.template, self.weights.weight_type)


def _config(model: Any) -> Any:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.config


class LlamaCppGenerator:
    """Evaluation / teacher generation with llama.cpp (the ``Generator`` protocol of
    ``mentor.generation.loop``): prompts rendered with the model's own chat template by its HF
    tokenizer (the same text as ``HFGenerator``), decoded ``batch_size`` at a time by ``LlamaCppEngine``
    from the model's weights exported once (``weight_type``; ``f32`` decodes exactly the HF
    weights)."""

    def __init__(self, tokenizer: Any, engine: LlamaCppEngine, chat_template_kwargs: dict | None = None):
        self.tokenizer, self.engine = tokenizer, engine
        self.chat_template_kwargs = chat_template_kwargs or {}
        self.batch_size = engine.n_seq  # conversations decoded together

    @classmethod
    def from_name(cls, name: str | None = None, weight_type: str = "bf16", template: str | os.PathLike | None = None,
                  n_ctx: int = 8192, n_threads: int | None = None, seed: int = 0, n_seq: int = 8) -> LlamaCppGenerator:
        from mentor.models import bundled_gguf, load

        model, tok = load(name, dtype="float32")
        engine = LlamaCppEngine(template=template or bundled_gguf(), weight_type=weight_type, n_ctx=n_ctx,
                                n_threads=n_threads, seed=seed, n_seq=n_seq)
        engine.sync(model)
        del model
        return cls(tok, engine)

    def render(self, conversation: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        return render_chat(self.tokenizer, conversation, tools, **self.chat_template_kwargs)

    def generate(self, conversations: Sequence[list[dict[str, Any]]], tools: list[dict[str, Any]] | None,
                 sampling: Sampling) -> list[Generation]:
        return self.generate_rendered([self.render(c, tools) for c in conversations], sampling)

    def generate_rendered(self, texts: Sequence[str], sampling: Sampling) -> list[Generation]:
        ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        news = self.engine.complete_batch(ids, sampling, [self.tokenizer.eos_token_id])
        return [Generation(parse_assistant(self.tokenizer.decode(new, skip_special_tokens=True)), tokens=len(new))
                for new in news]

    def close(self) -> None:
        self.engine.close()
