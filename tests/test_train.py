"""Real training runs on CPU with the bundled SmolLM2-135M student (slow): SFT, GRPO, resume,
SFT->RL, and the tool-result loss mask on a rollout with a tool call.

Budgets are tiny (2 tools in the prompt, 2 rollouts per question, 32-48 new tokens) so each
test stays within a few minutes on a shared 2-core machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

pytestmark = pytest.mark.slow

TOOLS = ["add", "multiply"]
#: the smoke check's problems and references (one definition: mentor.smoke)
from mentor.smoke import PROBLEMS  # noqa: E402
from mentor.smoke import write_references as _refs  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def refs(work) -> Path:
    return _refs(work / "refs.jsonl")


@pytest.fixture(scope="module")
def cfg_file(work) -> Path:
    cfg = {
        "tools": TOOLS,
        "seed": 0,
        "grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 40,
                 "max_tool_calling_iterations": 1, "learning_rate": 1e-4, "save_steps": 1,
                 "gradient_accumulation_steps": 1},
        "sft": {"learning_rate": 3e-3, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "save_steps": 100},
    }
    path = work / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str):
    from mentor.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def state_dict(path) -> dict[str, torch.Tensor]:
    from mentor.models import load_model

    return {k: v.detach().clone() for k, v in load_model(str(path)).state_dict().items()}


def changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def base_weights(default_model_path):
    return state_dict(default_model_path)


@pytest.fixture(scope="module")
def sft_run(work, refs, cfg_file, default_model_path) -> Path:
    out = work / "sftrl" / "sft"  # the SFT stage of an sft-rl run (test_sft_rl reuses it)
    cli("train", "sft", "--references", str(refs), "--model", "smollm2-135m", "--output-dir", str(out),
        "--config", str(cfg_file), "--max-steps", "3")
    return out


def test_sft_lora_assistant_only(sft_run, refs, base_weights):
    from mentor.models import load

    recs = records(sft_run / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3] and all(r["loss"] > 0 for r in recs)
    assert recs[-1]["loss"] < recs[0]["loss"]
    meta = json.loads((sft_run / "run.json").read_text())
    from mentor.io import file_sha256

    assert meta["references_sha256"] == file_sha256(refs) and meta["seed"] == 0 and "trl" in meta["versions"]
    assert (sft_run / "adapter" / "adapter_config.json").exists()
    model, tok = load(str(sft_run / "final"))  # merged LoRA: a plain HF model
    assert changed(base_weights, {k: v for k, v in model.state_dict().items()})
    assert not any("lora" in k for k in model.state_dict())
    # final/ is the saved adapter on the base: the same logits as the unmerged PEFT model
    from peft import PeftModel

    from mentor.models import load_model

    assert (sft_run / "adapter" / "tokenizer_config.json").exists()
    unmerged = PeftModel.from_pretrained(load_model("smollm2-135m"), str(sft_run / "adapter")).eval()
    ids = tok("What is 6 times 7?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, unmerged(ids).logits, atol=1e-4, rtol=1e-4)


def test_sft_loss_mask_covers_assistant_turns_only(refs, cfg_file, work):
    """The SFT examples TRL tokenised: labels on the assistant turns (tool calls, answer),
    never on the prompt or the tool output."""
    from mentor.train.sft import build_sft_trainer, prepare_sft

    prep = prepare_sft(refs, work / "mask-sft", config=str(cfg_file))
    trainer = build_sft_trainer(prep)
    tok = prep["tokenizer"]
    ex = trainer.train_dataset[0]
    ids, mask = ex["input_ids"], [label != -100 for label in ex["labels"]]  # TRL folds assistant_masks into labels
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    untrained = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert '<tool_call>\n{"name": "multiply", "arguments": {"firstNumber": 6, "secondNumber": 7}}\n</tool_call>' in trained
    assert "The answer is \\boxed{42}." in trained
    assert "<tool_response>\n42\n</tool_response>" in untrained and "<tool_response>" not in trained
    assert "Question: What is 6 times 7?" in untrained and "<tools>" in untrained


@pytest.fixture(scope="module")
def grpo_run(work, refs, cfg_file, default_model_path) -> Path:
    out = work / "grpo"
    cli("train", "grpo", "--preset", "mentor", "--references", str(refs), "--model", "smollm2-135m",
        "--output-dir", str(out), "--config", str(cfg_file), "--max-steps", "2")
    return out


def test_grpo_records_and_checkpoints(grpo_run, refs, base_weights):
    from mentor.io import file_sha256
    from mentor.models import load
    from mentor.rewards import PRESETS

    recs = records(grpo_run / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        logged = {k.split("/", 1)[1] for k in r if k.startswith("reward/")}
        assert logged == set(PRESETS["mentor"])  # exactly the preset's components
        assert set(r["trl"]) >= {f"rewards/{c}/mean" for c in PRESETS["mentor"]}
        assert not any(k.startswith("rewards/") and k.split("/")[1] not in PRESETS["mentor"] for k in r["trl"])
        for key in ("reward", "invalid_call_rate", "tool_usage_rate", "mean_tool_calls", "completion_length",
                    "clip_fraction", "frac_reward_zero_std", "step_time"):  # kl: logged by TRL only with beta > 0
            assert isinstance(r[key], float | int), key
        assert 0 <= r["invalid_call_rate"] <= 1 and 0 <= r["tool_usage_rate"] <= 1 and r["step_time"] > 0
        total = sum(r[f"reward/{c}"] for c in PRESETS["mentor"])
        assert r["reward"] == pytest.approx(total, abs=1e-5)
    assert list((grpo_run / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = grpo_run / "checkpoint-2"
    meta = json.loads((ckpt / "mentor_run.json").read_text())
    assert meta["references_sha256"] == file_sha256(refs) and meta["config"]["preset"] == "mentor"
    assert meta["reward_components"] == list(PRESETS["mentor"]) and meta["seed"] == 0
    budget = meta["completion_budget"]  # the 4 one-call trajectories against max_completion_length 40
    assert (budget["max_completion_length"], budget["references"]) == (40, 4) and budget["fit"] == 0
    model, tok = load(str(grpo_run / "final"))
    assert tok.chat_template
    # GRPO moves the weights when some group had reward variance (a non-zero advantage). The
    # untrained 135M student rarely has any (no tool calls, no boxed answers); test_sft_rl
    # checks the update where the SFT warm start guarantees variance.
    if any(r["trl"]["frac_reward_zero_std"] < 1 for r in recs):
        assert changed(base_weights, dict(model.state_dict()))


def test_grpo_resume(grpo_run, refs, cfg_file):
    before = (grpo_run / "metrics.jsonl").read_text().splitlines()
    cli("train", "grpo", "--preset", "mentor", "--references", str(refs), "--model", "smollm2-135m",
        "--output-dir", str(grpo_run), "--config", str(cfg_file), "--max-steps", "3", "--resume")
    assert [r["step"] for r in records(grpo_run / "metrics.jsonl")] == [1, 2, 3]
    assert (grpo_run / "metrics.jsonl").read_text().splitlines()[:2] == before  # continued, not rewritten
    state = json.loads((grpo_run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [h["step"] for h in state["log_history"] if "reward" in h] == [1, 2, 3]


def test_sft_rl_warm_start_calls_tools(sft_run, work, refs, cfg_file):
    out = work / "sftrl"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["grpo"].update(num_generations=4, per_device_train_batch_size=8, max_completion_length=64)
    (work / "cfg-sftrl.yaml").write_text(yaml.safe_dump(cfg))
    cli("train", "sft-rl", "--preset", "mentor", "--references", str(refs), "--output-dir", str(out),
        "--config", str(work / "cfg-sftrl.yaml"), "--max-steps", "1", "--sft-max-steps", "3")
    recs = records(out / "grpo" / "metrics.jsonl")
    assert len(recs) == 1
    # The SFT warm start is what gives the 135M student tool calls to be rewarded for, hence
    # reward variance within a group, a non-zero advantage, and a GRPO update.
    assert recs[0]["tool_usage_rate"] > 0 and recs[0]["mean_tool_calls"] > 0
    assert recs[0]["trl"]["frac_reward_zero_std"] < 1
    assert changed(state_dict(out / "sft" / "final"), state_dict(out / "final"))
    meta = json.loads((out / "grpo" / "run.json").read_text())
    assert meta["config"]["model"] == str(out / "sft" / "final")
    from mentor.models import load

    load(str(out / "final"))


def test_tool_result_tokens_masked_out_of_loss(sft_run, refs, cfg_file, work):
    """Drive TRL's own tool loop on a rollout whose first turn is a tool call: the tool runs,
    the student continues, and the tool-result tokens get tool_mask 0 (TRL multiplies it into
    the loss mask); the student's own tokens keep 1."""
    from trl.chat_template_utils import parse_response

    from mentor.prompts import build_messages
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo

    # Room for the call, the tool result and a continuation (TRL drops tool results that would
    # overflow max_completion_length).
    prep = prepare_grpo(refs, work / "mask-grpo", "mentor", str(sft_run / "final"), str(cfg_file),
                        max_completion_length=96)
    assert prep.references == refs and prep.task == "math"
    trainer, _ = build_grpo_trainer(prep)
    tok = trainer.processing_class
    prompts = [build_messages("What is 6 times 7?")]
    prompt_ids = [tok.apply_chat_template(prompts[0], tools=trainer.tools, add_generation_prompt=True, tokenize=True)["input_ids"]]
    call = '<tool_call>\n{"name": "multiply", "arguments": {"firstNumber": 6, "secondNumber": 7}}\n</tool_call><|im_end|>'
    completion_ids = [tok(call, add_special_tokens=False)["input_ids"]]
    n0 = len(completion_ids[0])  # TRL extends completion_ids in place
    completions = [[parse_response(tok, completion_ids[0], prefix=prompt_ids[0], tools=trainer.tools)]]
    assert completions[0][0]["tool_calls"][0]["function"]["name"] == "multiply"
    trainer._sync_tool_dicts = [{t.__name__: t for t in trainer.tools}]
    trainer._async_tool_dicts = [{}]
    tool_mask, comps, ids, _, n_calls, n_fail, _ = trainer._tool_call_loop(
        prompts, prompt_ids, completion_ids, completions, None, None, {})
    assert (n_calls, n_fail) == (1, 0)
    assert comps[0][1] == {"role": "tool", "name": "multiply", "content": "42"}
    mask, seq = tool_mask[0], ids[0]
    assert len(mask) == len(seq) and mask[:n0] == [1] * n0
    masked = tok.decode([t for t, m in zip(seq, mask, strict=True) if m == 0])
    kept = tok.decode([t for t, m in zip(seq, mask, strict=True) if m == 1])
    assert "<tool_response>\n42\n</tool_response>" in masked and "<tool_call>" not in masked
    assert call.replace("<|im_end|>", "") in kept and "<tool_response>" not in kept
    n_tool = mask[n0:].count(0)
    assert n_tool > 0 and mask[n0 : n0 + n_tool] == [0] * n_tool  # one contiguous tool-result span
    assert mask[n0 + n_tool :] and set(mask[n0 + n_tool :]) == {1}  # the student's continuation is trained
    # And the mentor reward sees the executed rollout: the call was valid and matches the teacher's tool.
    from mentor.trajectory import Trajectory

    traj = Trajectory.from_any(comps[0])
    assert traj.tool_names == ["multiply"] and traj.all_calls_valid
