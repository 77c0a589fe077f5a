"""One prompt (issue #12, part 5): GRPO training, evaluation and the teacher render the identical
prompt for the same question and tools, in every prompt style, and the rendered tool schemas are
the paper's (SPEC.md, Tables 7-12): no ``return`` key, ``top_n`` with its ``"default": 5``.

The training side is TRL's own rendering: a real ``GRPOTrainer`` (a tiny random model) built with
mentor's tools (``callables``, wrapped by ``timed_tool`` as ``build_grpo_trainer`` does), asked
through ``_tokenize_prompts``, the method its generation step calls."""

import json

import pytest

from mentor.generation import HFGenerator
from mentor.generation.loop import offered
from mentor.prompts import STYLES, build_messages, chat_template, render
from mentor.tools.callables import callables
from mentor.tools.executor import LOCAL
from mentor.tools.registry import schemas
from mentor.train.callbacks import Clock, timed_tool

QUESTIONS = {"math": "What is 2+3?", "search": "Who wrote Hamlet?"}


def _zero(completions, **kwargs):
    return [0.0] * len(completions)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def _trl_prompt_ids(model, tokenizer, toolset, question, out_dir):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    prompt = build_messages(question)
    args = GRPOConfig(output_dir=str(out_dir), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, report_to="none", use_cpu=True)
    trainer = GRPOTrainer(model=model, reward_funcs=[_zero], args=args,
                          train_dataset=Dataset.from_list([{"prompt": prompt}] * 2), processing_class=tokenizer,
                          tools=[timed_tool(t, Clock()) for t in callables(toolset, LOCAL)])
    prompt_ids, _, _ = trainer._tokenize_prompts([prompt])
    # TRL executes a tool as its tool dicts do: by __name__, synchronously
    assert not trainer._has_async_funcs
    tools = {t.__name__: t for t in trainer._standalone_tools}
    if toolset == "math":
        assert tools["add"](firstNumber=2, secondNumber=3) == "5"
    return list(prompt_ids[0])


@pytest.mark.slow
@pytest.mark.parametrize("toolset", ["math", "search"])
@pytest.mark.parametrize("style", STYLES)
def test_grpo_renders_the_evaluation_prompt(style, toolset, tiny_model, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = chat_template(style)
    question = QUESTIONS[toolset]
    # evaluation and the local teacher: HFGenerator.render with the schemas the tool loop offers
    tool_schemas, _ = offered(toolset, LOCAL)
    evaluation = HFGenerator(tiny_model, tok).render(build_messages(question), tool_schemas)
    # the style's template without a tokenizer (prompt_text, the program/OpenAI teachers' schemas)
    assert render(build_messages(question), toolset, style=style) == evaluation

    trl_ids = _trl_prompt_ids(tiny_model, tok, toolset, question, tmp_path)
    assert tok.decode(trl_ids) == evaluation
    assert trl_ids == tok(evaluation, add_special_tokens=False)["input_ids"]
    # SFT: the dataset's tools column, rendered as TRL's SFTTrainer does (the training template)
    assert _sft_text(tok, toolset, question).startswith(evaluation)


def _sft_text(tok, toolset, question):
    from trl.chat_template_utils import get_training_chat_template

    from mentor.references import Reference
    from mentor.train.data import sft_dataset

    task = "math" if toolset == "math" else "qa"
    ref = Reference(id="1", question=question, answer="5", messages=[{"role": "assistant", "content": "\\boxed{5}"}],
                    teacher_answer="5", teacher_tools=[], correct=True, task=task)
    row = sft_dataset([ref])[0]
    return tok.apply_chat_template(row["messages"], tools=json.loads(row["tools"]), tokenize=False,
                                   chat_template=get_training_chat_template(tok))


def _tools_in(text):
    block = text.split("<tools>\n")[1].split("\n</tools>")[0]
    return [json.loads(line) for line in block.strip().splitlines()]


@pytest.mark.parametrize("style", [s for s in STYLES if s != "qwen2.5-compact"])
def test_rendered_schemas_are_the_papers(style):
    text = render(build_messages("Who wrote Hamlet?"), "search", style=style)
    assert _tools_in(text) == [{
        "type": "function",
        "function": {
            "name": "wikipedia_search",
            "description": "Search Wikipedia for a given query.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Query to search for."},
                    "top_n": {"type": "integer", "description": "Number of results to return. The default value is 5.",
                              "default": 5},
                },
                "required": ["query"],
            },
        },
    }]
    math = _tools_in(render(build_messages("What is 2+3?"), "math", style=style))
    assert math == schemas("math") and len(math) == 12
    assert not any("return" in t or "return" in t["function"] for t in math)


def test_trl_tools_are_the_registry_schemas_and_execute():
    from transformers.utils.chat_template_utils import render_jinja_template

    tools = [timed_tool(t, Clock()) for t in callables("search")]
    assert tools == schemas("search") and tools[0].__name__ == "wikipedia_search"
    rendered, _ = render_jinja_template(conversations=[build_messages("q")], tools=tools,
                                        chat_template=chat_template("qwen2.5"), add_generation_prompt=True)
    assert '"default": 5' in rendered[0] and '"return"' not in rendered[0]
    add = {t.__name__: t for t in callables("math")}["add"]
    assert add(firstNumber=2, secondNumber=3) == "5"
