"""The numeric format of training, decided from the hardware: one place for every ``auto``.

Three settings of a training config choose between bfloat16 and float32:

- ``model_dtype`` (top level): the frozen base's dtype in LoRA GRPO (``float32 | bfloat16 | auto``);
- ``grpo.bf16`` and ``sft.bf16``: bf16 autocast (mixed precision) of the trainers (``true | false | auto``).

``auto`` (the CPU configs' value) resolves to bfloat16 where the device computes it natively and to
float32 elsewhere; a section without ``bf16`` is ``auto`` too (TRL would otherwise default it to
``true`` everywhere). On CUDA, native means ``torch.cuda.is_bf16_supported()``; on an x86 CPU it
means torch's oneDNN reports bf16 support *and* the CPU has bf16 instructions (AVX-512 BF16 or
AMX: ``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``); oneDNN alone also says yes for plain AVX-512, where bf16 is converted in
software. Without them bf16 is emulated: an AVX2-only AMD EPYC ran a 512x576x1536 bf16 matmul
~45x slower than fp32 and the demo's SFT steps ~30x slower (docs/measurements.md), so an explicit
``true``/``bfloat16`` there is kept but warned about, naming the key.

``resolve(cfg)`` returns the config with every ``auto`` replaced and a ``Precision`` record (the
hardware, what was asked, what was chosen, the warnings) that the runs print in their header and
save in ``run.json``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

AUTO = "auto"
#: the CPU flags that matter for the numeric format (``/proc/cpuinfo``), in this order
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16")
#: the slowdown an explicit bf16 costs where it is emulated (measured, docs/measurements.md)
EMULATED_SLOWDOWN = "bf16 is emulated on this CPU: ~30x slower SFT steps and ~45x slower matmuls than float32 were measured"


@dataclass(frozen=True)
class Hardware:
    """What the numeric format is decided from."""

    device: str  # "cpu" or "cuda"
    name: str  # the CPU model (``/proc/cpuinfo``) or the GPU's name
    flags: tuple[str, ...]  # the present ``CPU_FLAGS`` (empty on CUDA)
    native_bf16: bool
    check: str  # how native_bf16 was decided

    def describe(self) -> str:
        flags = f" [{', '.join(self.flags) or 'no avx2/avx512/amx flags'}]" if self.device == "cpu" else ""
        return f"{self.device}: {self.name}{flags}; native bf16: {'yes' if self.native_bf16 else 'no'} ({self.check})"


def _cpuinfo(path: str | os.PathLike = "/proc/cpuinfo") -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and which of ``CPU_FLAGS`` it has (Linux; elsewhere the platform's name)."""
    name, flags = "", set()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "Model") and value and not name:
            name = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name or platform.processor() or platform.machine() or "unknown CPU", tuple(f for f in CPU_FLAGS if f in flags)


def machine() -> dict[str, Any]:
    """The CPU model, its ``CPU_FLAGS`` and the core count (no torch needed): what every run and
    benchmark records beside its timings."""
    name, flags = _cpuinfo()
    return {"cpu": name, "cpu_flags": list(flags), "cpu_count": os.cpu_count()}


def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively for torch, and the check that said so."""
    import torch

    onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        avx512_bf16 = bool(torch.cpu._is_avx512_bf16_supported())
        amx = bool(torch.cpu._is_amx_tile_supported())
        return (onednn and (avx512_bf16 or amx),
                f"torch: oneDNN bf16 {'yes' if onednn else 'no'}, avx512_bf16 {'yes' if avx512_bf16 else 'no'}, "
                f"amx {'yes' if amx else 'no'}")
    return onednn, f"torch: oneDNN bf16 {'yes' if onednn else 'no'}"


@cache
def detect(device: str = "cpu") -> Hardware:
    """The hardware of ``device`` ("cpu" or "cuda"), checked once per process."""
    if device == "cuda":
        import torch

        return Hardware("cuda", torch.cuda.get_device_name(), (), bool(torch.cuda.is_bf16_supported()),
                        "torch.cuda.is_bf16_supported()")
    name, flags = _cpuinfo()
    native, check = cpu_native_bf16()
    return Hardware("cpu", name, flags, native, check)


def training_device(cfg: Mapping[str, Any]) -> str:
    """Where the trainers of ``cfg`` compute: "cuda" when there is one and no section sets ``use_cpu``."""
    if any((cfg.get(s) or {}).get("use_cpu") for s in ("grpo", "sft")):
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


@dataclass
class Precision:
    """The numeric format of one resolved config."""

    hardware: Hardware
    requested: dict[str, Any] = field(default_factory=dict)  # key -> the config's value ("auto" when unset)
    chosen: dict[str, Any] = field(default_factory=dict)  # key -> the resolved value
    warnings: list[str] = field(default_factory=list)

    def picks(self, keys: tuple[str, ...] | None = None) -> list[str]:
        """``key=value`` per chosen key, marked ``(auto)`` where the hardware chose it."""
        return [f"{k}={v}" + (" (auto)" if self.requested.get(k) in (AUTO, None) else "")
                for k, v in self.chosen.items() if keys is None or k in keys]

    def describe(self, keys: tuple[str, ...] | None = None) -> str:
        return f"{self.hardware.describe()} -> {', '.join(self.picks(keys))}"

    def warnings_for(self, keys: tuple[str, ...] | None = None) -> list[str]:
        return [w for w in self.warnings if keys is None or w.split(":", 1)[0] in keys]

    def record(self) -> dict[str, Any]:
        return {"hardware": asdict(self.hardware), "requested": self.requested, "chosen": self.chosen,
                "warnings": self.warnings}


def _is_bf16(value: Any) -> bool:
    return value is True or str(value).lower() in ("bfloat16", "bf16", "true")


def resolve(cfg: Mapping[str, Any], hardware: Hardware | Callable[[str], Hardware] | None = None,
            sections: tuple[str, ...] = ("grpo", "sft")) -> tuple[dict[str, Any], Precision]:
    """``cfg`` with ``model_dtype`` and each section's ``bf16`` resolved (``auto`` or unset -> from the
    hardware), and the ``Precision`` record. ``hardware``: a ``Hardware`` or a function of the device
    (default ``detect``), so tests can give a CPU without bf16."""
    device = training_device(cfg)
    hw = hardware if isinstance(hardware, Hardware) else (hardware or detect)(device)
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()}
    prec = Precision(hw)

    def pick(key: str, value: Any, bf16: Any, fp32: Any) -> Any:
        prec.requested[key] = value
        if value is None or value == AUTO:
            chosen = bf16 if hw.native_bf16 else fp32
        else:
            chosen = value
            if _is_bf16(value) and not hw.native_bf16:
                prec.warnings.append(f"{key}: {value} on a {hw.device} without native bf16 ({hw.name}): "
                                     f"{EMULATED_SLOWDOWN}; set {key}: auto (or {fp32}) for float32")
        prec.chosen[key] = chosen
        return chosen

    # bfloat16 weights need a LoRA adapter (full fine-tuning keeps float32 weights: mentor.train.grpo)
    lora = bool(out.get("lora_grpo"))
    out["model_dtype"] = pick("model_dtype", out.get("model_dtype"), "bfloat16" if lora else "float32", "float32")
    for section in sections:
        s = out[section] = dict(out.get(section) or {})
        s["bf16"] = pick(f"{section}.bf16", s.get("bf16"), True, False)
    return out, prec
