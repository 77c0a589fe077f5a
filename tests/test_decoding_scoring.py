"""Decoding and scoring (issue #12, part 4): evaluation samples with the model's recommended
settings (its generation_config.json) unless asked for greedy or explicit values, math can be
scored with the paper's normalised exact match, and results record both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentor.answers import math_equal, math_exact_match, normalize_math_answer
from mentor.eval import evaluate
from mentor.generation.decoding import resolve_sampling
from mentor.pipeline.config import PipelineConfig, PipelineError, load_config
from mentor.rollout import Generation, parse_assistant
from mentor.tasks import get_task


def _model_dir(tmp_path: Path, generation_config: dict | None) -> Path:
    d = tmp_path / "model"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if generation_config is not None:
        (d / "generation_config.json").write_text(json.dumps(generation_config))
    return d


def test_recommended_sampling_is_read_from_the_generation_config(tmp_path):
    d = _model_dir(tmp_path, {"bos_token_id": 1, "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                              "repetition_penalty": 1.05})
    sampling, decoding = resolve_sampling(str(d), max_new_tokens=32, seed=3)
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.max_new_tokens, sampling.seed) == (0.7, 0.8, 20, 32, 3)
    assert decoding == {"mode": "recommended", "greedy": False, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                        "generation_config": str(d / "generation_config.json")}
    # greedy on request, or explicit values, whatever the config recommends
    sampling, decoding = resolve_sampling(str(d), temperature=0)
    assert sampling.greedy and sampling.top_k is None and decoding["mode"] == "greedy"
    sampling, decoding = resolve_sampling(str(d), temperature=0.5)
    assert (sampling.temperature, sampling.top_p, sampling.top_k, decoding["mode"]) == (0.5, 1.0, None, "explicit")


def test_a_config_without_sampling_recommends_greedy(tmp_path):
    d = _model_dir(tmp_path, {"bos_token_id": 1, "temperature": 0.9})  # no do_sample: generate() decodes greedily
    sampling, decoding = resolve_sampling(str(d))
    assert sampling.greedy and decoding["mode"] == "recommended" and decoding["generation_config"].endswith(".json")
    sampling, decoding = resolve_sampling(str(_model_dir(tmp_path / "none", None)))
    assert sampling.greedy and decoding == {"mode": "recommended", "greedy": True, "temperature": 0.0, "top_p": 1.0,
                                            "top_k": None, "generation_config": None}


def test_the_bundled_model_recommends_greedy(default_model_path):
    sampling, decoding = resolve_sampling("smollm2-135m")
    assert sampling.greedy and decoding["mode"] == "recommended"
    assert decoding["generation_config"] == str(Path(default_model_path) / "generation_config.json")


# ----------------------------------------------------------------------------- math scoring

# (prediction, gold, exact match, math-verify): where the paper's metric and equivalence disagree,
# and where normalisation makes them agree
CASES = [
    ("0.5", "\\frac{1}{2}", False, True),
    ("5.0", "5", False, True),
    ("2\\sqrt{2}", "\\sqrt{8}", False, True),
    ("\\frac{2}{4}", "\\frac{1}{2}", False, True),
    ("\\dfrac12", "\\frac{1}{2}", True, True),
    ("x = 3", "3", True, True),
    ("90^\\circ", "90", True, True),
    ("50\\%", "50", True, True),
    (".5", "0.5", True, True),
    ("\\text{(B)}.", "(B)", True, True),
    ("4", "5", False, False),
    (None, "5", False, False),
]


@pytest.mark.parametrize(("prediction", "gold", "exact", "verify"), CASES)
def test_exact_match_and_math_verify(prediction, gold, exact, verify):
    assert math_exact_match(prediction, gold) is exact
    assert math_equal(prediction, gold) is verify


def test_normalisation():
    assert normalize_math_answer(" \\left( 1, 2 \\right) ") == "(1,2)"
    assert normalize_math_answer("\\tfrac{3}{4}") == "\\frac{3}{4}"


def test_math_task_scorers():
    math = get_task("math")
    assert math.scorer_name == "math_verify" and math.score("0.5", "\\frac{1}{2}")
    exact = math.with_scorer("exact")
    assert exact.scorer_name == "exact" and not exact.score("0.5", "\\frac{1}{2}") and exact.score("\\frac12", "\\frac{1}{2}")
    assert math.scorer_name == "math_verify"  # the registered task is untouched
    with pytest.raises(ValueError, match="unknown scorer 'f1' for task 'math'; its scorers: math_verify, exact"):
        math.with_scorer("f1")


class _OneAnswer:
    name = "scripted"
    batch_size = 4

    def __init__(self):
        self.samplings = []

    def generate(self, conversations, tools, sampling):
        self.samplings.append(sampling)
        return [Generation(parse_assistant("So \\boxed{0.5}."), tokens=3) for _ in conversations]


def test_results_record_decoding_and_scorer(tmp_path):
    bench = tmp_path / "half.jsonl"
    bench.write_text(json.dumps({"problem": "Half of one?", "answer": "\\frac{1}{2}"}) + "\n")
    d = _model_dir(tmp_path, {"do_sample": True, "temperature": 0.6, "top_p": 0.95})
    gen = _OneAnswer()
    res = evaluate(str(d), str(bench), generator=gen, progress=False)
    assert res["accuracy"] == 1.0 and res["settings"]["scorer"] == "math_verify"
    assert res["settings"]["decoding"]["mode"] == "recommended"
    assert (gen.samplings[0].temperature, gen.samplings[0].top_p) == (0.6, 0.95)
    res = evaluate(str(d), str(bench), generator=gen, progress=False, temperature=0, scorers={"math": "exact"})
    assert res["accuracy"] == 0.0 and res["settings"]["scorer"] == "exact"
    assert res["settings"]["decoding"]["mode"] == "greedy" and gen.samplings[-1].greedy
    assert res["settings"]["temperature"] == 0.0


def test_pipeline_configs_decoding_and_scorer():
    cpu = PipelineConfig.from_mapping(load_config(None))
    assert cpu.eval.temperature == 0 and cpu.eval.math_scorer == "math_verify"  # greedy, stated in the file
    gpu_file = Path(__file__).resolve().parents[1] / "configs" / "pipeline" / "gpu-qwen2.5-1.5b.yaml"
    gpu = PipelineConfig.from_mapping(load_config(gpu_file))
    assert gpu.eval.temperature is None and gpu.eval.top_p is None and gpu.eval.math_scorer == "exact"
    assert gpu.eval.decoding(0)["scorers"] == {"math": "exact"}
    with pytest.raises(PipelineError, match="eval.math_scorer: unknown scorer 'em'"):
        PipelineConfig.from_mapping(load_config(None, {"eval": {"math_scorer": "em"}}))


def test_the_generation_config_is_the_generators_models():
    from types import SimpleNamespace

    from mentor.generation.decoding import generation_config_file, model_source
    from mentor.generation.openai_compat import OpenAIConfig, OpenAIGenerator

    hf = SimpleNamespace(model=SimpleNamespace(name_or_path="/runs/mentor/final"))
    assert model_source(hf, "mentor") == "/runs/mentor/final"  # a label passed as model does not matter
    served = OpenAIGenerator(OpenAIConfig(model="Qwen/Qwen2.5-1.5B-Instruct", base_url="http://127.0.0.1:1/v1"))
    assert model_source(served, None) == "Qwen/Qwen2.5-1.5B-Instruct"
    assert model_source(object(), "m") == "m"
    assert generation_config_file("no-such-org/no-such-model-for-mentor") is None
