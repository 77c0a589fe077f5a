import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mentor.trajectory import Trajectory, parse_observation


def call(name, **args):
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def test_text_with_multiple_calls_per_turn_and_across_turns():
    text = (
        "I will multiply first." + call("multiply", firstNumber=12, secondNumber=3) + call("add", firstNumber=1, secondNumber=2)
        + "<tool_response>\n36\n</tool_response><tool_response>\n3\n</tool_response>"
        + "Now divide." + call("divide", numerator=36, denominator=3)
        + "<tool_response>\n12\n</tool_response>So the answer is \\boxed{12}."
    )
    t = Trajectory.from_text(text)
    assert t.tool_names == ["multiply", "add", "divide"]
    assert t.tool_set == {"multiply", "add", "divide"}
    assert t.num_tool_calls == 3 and t.num_invalid_calls == 0 and t.all_calls_valid
    assert [c.observation.content for c in t.tool_calls] == ["36", "3", "12"]
    assert t.tool_calls[0].arguments == {"firstNumber": 12, "secondNumber": 3}
    assert '"multiply"' in t.tool_calls[0].raw
    assert t.final_answer == "12"


def test_malformed_calls_are_kept_and_invalid():
    text = (
        '<tool_call>{"name": "add", "arguments": {"firstNumber": 1,}}</tool_call>'  # bad JSON, name recoverable
        '<tool_call>{"arguments": {"x": 1}}</tool_call>'  # no name
        '<tool_call>{"name": "sqrt", "arguments": [4]}</tool_call>'  # non-dict arguments
        "<tool_call>[1, 2]</tool_call>"  # not an object
        '<tool_call>{"name": "floor", "arguments": {"number": 2.5}}'  # unclosed
    )
    t = Trajectory.from_text(text)
    assert t.num_tool_calls == 5
    assert t.num_invalid_calls == 5
    assert not t.all_calls_valid
    assert t.tool_names == ["add", "sqrt", "floor"]  # named invalid calls count, unnamed do not
    assert all(not c.well_formed for c in t.tool_calls)
    assert "not valid JSON" in t.tool_calls[0].error
    assert "name" in t.tool_calls[1].error
    assert "must be an object" in t.tool_calls[2].error
    assert "unclosed" in t.tool_calls[4].error


def test_call_without_observation_is_checked_by_execution():
    t = Trajectory.from_text(call("divide", numerator=1, denominator=0) + call("add", firstNumber=1, secondNumber=1))
    assert [c.valid for c in t.tool_calls] == [False, True]
    assert "division by zero" in t.tool_calls[0].error
    assert not Trajectory.from_text(call("no_such_tool", x=1)).all_calls_valid


def test_no_calls_counts_as_valid_and_think_is_ignored_for_answer():
    t = Trajectory.from_text("<think>maybe \\boxed{7}</think>The answer is \\boxed{8}.")
    assert t.num_tool_calls == 0 and t.all_calls_valid
    assert t.final_answer == "8"
    assert "maybe" in t.reasoning
    t2 = Trajectory.from_text("<think>only thinking \\boxed{7}</think>")
    assert t2.final_answer is None


def test_bare_closing_think_from_template_prefill():
    t = Trajectory.from_text("reasoning here \\boxed{1}</think>answer \\boxed{2}")
    assert t.final_answer == "2" and "reasoning here" in t.reasoning


def test_chatml_markers_are_stripped():
    t = Trajectory.from_text("<|im_start|>assistant\nThe result is \\boxed{3}<|im_end|>")
    assert t.final_answer == "3"
    assert "<|im_end|>" not in t.text


def test_from_messages_openai_form():
    messages = [
        {"role": "system", "content": "tools..."},
        {"role": "user", "content": "Question: what is 2+3 then times 4? \\boxed{99}"},
        {
            "role": "assistant",
            "content": "<think>add then multiply</think>",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "add", "arguments": '{"firstNumber": 2, "secondNumber": 3}'}},
                {"id": "b", "type": "function", "function": {"name": "divide", "arguments": {"numerator": 1, "denominator": 0}}},
            ],
        },
        {"role": "tool", "tool_call_id": "b", "content": '{"error": "division by zero"}'},
        {"role": "tool", "tool_call_id": "a", "content": "5"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"firstNumber": 5, "secondNumber": 4}}}]},
        {"role": "tool", "content": "20"},
        {"role": "assistant", "content": "So \\boxed{20}"},
    ]
    t = Trajectory.from_messages(messages)
    assert t.tool_names == ["add", "divide", "multiply"]
    assert t.tool_calls[0].observation.content == "5"  # matched by tool_call_id
    assert not t.tool_calls[1].observation.ok
    assert t.num_invalid_calls == 1
    assert t.final_answer == "20"  # the user prompt's \boxed is not the model's answer
    assert "add then multiply" in t.reasoning


def test_from_messages_trl_error_repr_and_reasoning_content():
    messages = [
        {"role": "assistant", "reasoning_content": "think \\boxed{1}", "content": "", "tool_calls": [{"type": "function", "function": {"name": "sqrt", "arguments": {"number": -1}}}]},
        {"role": "tool", "name": "sqrt", "content": str({"error": "square root of a negative number"})},
        {"role": "assistant", "content": "I cannot. \\boxed{i}"},
    ]
    t = Trajectory.from_messages(messages)
    assert t.num_invalid_calls == 1
    assert t.tool_calls[0].observation.error == "square root of a negative number"
    assert t.final_answer == "i"
    assert t.reasoning == "think \\boxed{1}"


def test_from_messages_unparsed_tool_call_text_in_content():
    messages = [
        {"role": "assistant", "content": '<tool_call>{"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}</tool_call><tool_call>{bad</tool_call>'},
        {"role": "user", "content": "<tool_response>\n3\n</tool_response>"},
        {"role": "assistant", "content": "\\boxed{3}"},
    ]
    t = Trajectory.from_messages(messages)
    assert t.num_tool_calls == 2 and t.num_invalid_calls == 1
    assert t.tool_calls[0].observation.content == "3"


def test_structured_calls_not_double_counted_with_text():
    messages = [
        {
            "role": "assistant",
            "content": '<tool_call>{"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}</tool_call>',
            "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}}],
        }
    ]
    assert Trajectory.from_messages(messages).num_tool_calls == 1


def test_to_messages_round_trip():
    text = "Let me compute." + call("multiply", firstNumber=6, secondNumber=7) + "<tool_response>42</tool_response>\\boxed{42}"
    t = Trajectory.from_text(text)
    msgs = t.to_messages()
    assert [m["role"] for m in msgs] == ["assistant", "tool", "assistant"]
    assert msgs[0]["tool_calls"][0]["function"] == {"name": "multiply", "arguments": {"firstNumber": 6, "secondNumber": 7}}
    assert msgs[1]["tool_call_id"] == msgs[0]["tool_calls"][0]["id"]
    back = Trajectory.from_messages(msgs)
    assert back.tool_names == t.tool_names and back.final_answer == "42" and back.all_calls_valid


def test_parse_observation_forms():
    assert parse_observation("12").ok
    assert not parse_observation('{"error": "boom"}').ok
    assert not parse_observation("{'error': 'boom'}").ok
    assert parse_observation('{"result": 3}').ok
    assert parse_observation({"error": None}).ok
    assert not parse_observation([{"type": "text", "text": '{"error": "x"}'}]).ok


TAGS = st.sampled_from(["<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>", "\\boxed{", "}", "{", '"name"', ":", '"arguments"', "<|im_end|>", "\\boxed ", "\\fbox{"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(TAGS, st.text(max_size=20)), max_size=30).map("".join))
def test_from_text_never_raises(text):
    t = Trajectory.from_text(text)
    assert t.num_invalid_calls <= t.num_tool_calls
    assert isinstance(t.tool_names, list)
    t.to_messages()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "reasoning_content"]),
            st.one_of(st.sampled_from(["assistant", "tool", "user"]), st.text(max_size=30), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=2)),
            max_size=5,
        ),
        max_size=6,
    )
)
def test_from_messages_never_raises(messages):
    t = Trajectory.from_messages(messages)
    assert t.num_invalid_calls <= t.num_tool_calls
