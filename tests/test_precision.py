"""The numeric format from the hardware (mentor.precision): ``auto`` gives float32 on a CPU without
native bf16 and bf16 on one with it; an explicit bf16 on a CPU without it is warned about, naming
the key. The capability checks are monkeypatched (torch's own, or the detection), not the machine."""

from __future__ import annotations

import json

import pytest
import torch

from mentor import precision as P
from mentor.pipeline.config import load_config
from mentor.pipeline.stages import Pipeline
from mentor.train import config as C
from mentor.train.common import print_precision, write_run_metadata

AMD_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx avx2 fma f16c bmi2
"""


@pytest.fixture(autouse=True)
def _fresh_detection():
    P.detect.cache_clear()
    yield
    P.detect.cache_clear()


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    """torch's capability checks say no: oneDNN without bf16, no AVX-512 BF16, no AMX (an AVX2-only CPU)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def _demo_configs():
    """The training configs the bundled demo's SFT and RL stages resolve (configs/pipeline/cpu.yaml)."""
    pipe = load_config(None)
    train = pipe["train"]
    return (C.resolve(train["config"], **train["sft"]), C.resolve(train["config"], **train["rl"]))


def test_no_native_bf16_resolves_every_auto_to_float32(no_bf16_cpu):
    assert P.cpu_native_bf16()[0] is False
    sft, rl = _demo_configs()
    assert sft["sft"]["bf16"] is False
    assert rl["grpo"]["bf16"] is False and rl["model_dtype"] == "float32"
    prec = rl["_precision"]
    assert prec.requested == {"model_dtype": "auto", "grpo.bf16": "auto", "sft.bf16": "auto"}
    assert prec.warnings == [] and not prec.hardware.native_bf16
    assert "native bf16: no" in prec.describe() and "model_dtype=float32 (auto)" in prec.describe()


def test_native_bf16_resolves_every_auto_to_bf16(bf16_cpu):
    sft, rl = _demo_configs()
    assert sft["sft"]["bf16"] is True
    assert rl["grpo"]["bf16"] is True and rl["model_dtype"] == "bfloat16"  # configs/cpu.yaml has lora_grpo
    assert rl["_precision"].warnings == []


def test_bf16_base_only_with_lora(bf16_cpu):
    cfg = C.resolve({"lora_grpo": False, "model_dtype": "auto"})
    assert cfg["model_dtype"] == "float32" and cfg["grpo"]["bf16"] is True


def test_unset_bf16_is_auto_not_trls_true(no_bf16_cpu):
    """TRL's SFTConfig/GRPOConfig default bf16 to true; a section without it is resolved like auto."""
    cfg, prec = P.resolve({"grpo": {}, "sft": {"learning_rate": 1e-3}, "model_dtype": "float32"})
    assert cfg["grpo"]["bf16"] is False and cfg["sft"]["bf16"] is False and cfg["sft"]["learning_rate"] == 1e-3
    assert prec.requested["sft.bf16"] is None and "sft.bf16=False (auto)" in prec.picks()


def test_explicit_bf16_without_native_bf16_warns_naming_the_key(no_bf16_cpu, capsys):
    cfg = C.resolve(None, model_dtype="bfloat16", bf16=True)
    assert cfg["model_dtype"] == "bfloat16" and cfg["grpo"]["bf16"] is True and cfg["sft"]["bf16"] is True  # kept
    warnings = cfg["_precision"].warnings
    assert [w.split(":")[0] for w in warnings] == ["model_dtype", "grpo.bf16", "sft.bf16"]
    assert all("emulated" in w and "30x slower" in w and "auto" in w for w in warnings)
    print_precision(cfg, "sft")
    err = capsys.readouterr().err
    assert "warning: sft.bf16: True" in err and "grpo.bf16" not in err  # the SFT header: its own key only


def test_explicit_float32_on_bf16_hardware_is_kept(bf16_cpu):
    cfg = C.resolve(None, model_dtype="float32", bf16=False)
    assert cfg["model_dtype"] == "float32" and cfg["grpo"]["bf16"] is False
    assert cfg["_precision"].warnings == [] and "(auto)" not in " ".join(cfg["_precision"].picks())


def test_cuda_uses_torchs_cuda_check(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    cfg, prec = P.resolve({"grpo": {"bf16": True}, "sft": {"bf16": "auto"}, "model_dtype": "float32"})
    assert prec.hardware.device == "cuda" and prec.hardware.name == "Tesla V100"
    assert cfg["sft"]["bf16"] is False and [w.split(":")[0] for w in prec.warnings] == ["grpo.bf16"]
    # use_cpu in a section: the trainers compute on the CPU whatever the machine has
    assert P.training_device({"grpo": {"use_cpu": True}}) == "cpu"


def test_bad_values_are_errors_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  bf16: autoo\n")
    with pytest.raises(C.ConfigError, match=r"bad.yaml: sft.bf16 must be true, false or auto, got 'autoo'"):
        C.load_yaml(bad)
    bad.write_text("model_dtype: bf16\n")
    with pytest.raises(C.ConfigError, match=r"bad.yaml: model_dtype must be one of float32, bfloat16, auto"):
        C.load_yaml(bad)


def test_cpuinfo_model_and_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(AMD_CPUINFO)
    assert P._cpuinfo(f) == ("AMD EPYC 7B13", ("avx2",))


def test_run_json_records_the_hardware_and_choice(no_bf16_cpu, tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text("{}\n")
    cfg = C.resolve(None)
    meta = json.loads(write_run_metadata(tmp_path, cfg, refs, "sft").read_text())
    assert meta["precision"]["hardware"]["native_bf16"] is False
    assert meta["precision"]["chosen"] == {"model_dtype": "float32", "grpo.bf16": False, "sft.bf16": False}
    assert meta["precision"]["hardware"]["name"] == P._cpuinfo()[0]


def test_pipeline_header_names_cpu_and_format(no_bf16_cpu, tmp_path):
    pipe = Pipeline(load_config(None), tmp_path / "run", progress=False)
    pipe.out.mkdir(parents=True)
    lines = pipe.precision_header(["sft", "sparse", "mentor", "eval"])
    assert lines[0].startswith("[mentor run] cpu: ") and "native bf16: no" in lines[0]
    assert lines[1] == "[mentor run] numeric format: sft.bf16=False (auto), model_dtype=float32 (auto), grpo.bf16=False (auto)"
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["precision"]["chosen"] == {"sft.bf16": False, "model_dtype": "float32", "grpo.bf16": False}
    assert pipe.precision_header(["eval", "report"]) == []  # no training stage: nothing to decide


def test_pipeline_header_reports_a_bad_precision_value_as_a_pipeline_error(tmp_path):
    from mentor.pipeline.config import PipelineError

    cfg = load_config(None)
    cfg["train"]["sft"] = {**cfg["train"]["sft"], "bf16": "yes"}
    pipe = Pipeline(cfg, tmp_path / "run", progress=False)
    with pytest.raises(PipelineError, match=r"train.sft: overrides: bf16 must be true, false or auto, got 'yes'"):
        pipe.precision_header(["sft"])
