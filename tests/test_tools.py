import math

import pytest

from mentor.tools import (
    ALL_TOOLS,
    Executor,
    MATH_TOOL_NAMES,
    MATH_TOOLS,
    InMemoryBM25,
    Passage,
    ToolError,
    callables,
    execute,
    get_tool,
    schemas,
)

PAPER = [  # (name, description, parameter names) - SPEC.md Tables 11-12, in the paper's order
    ("add", "Add two numbers together", ["firstNumber", "secondNumber"]),
    ("subtract", "Subtract one number from another", ["minuend", "subtrahend"]),
    ("multiply", "Multiply two numbers together", ["firstNumber", "secondNumber"]),
    ("divide", "Divide one number by another", ["numerator", "denominator"]),
    ("sum_numbers", "Calculate the sum of an array of numbers", ["numbers"]),
    ("floor", "Calculate the floor of a number", ["number"]),
    ("ceil", "Calculate the ceil of a number", ["number"]),
    ("round_number", "Round a number to the nearest integer", ["number"]),
    ("power", "Calculate base raised to the power of exponent", ["base", "exponent"]),
    ("sqrt", "Calculate the square root of a number", ["number"]),
    ("abs_value", "Calculate the absolute value of a number", ["number"]),
    ("modulo", "Calculate the modulo of two numbers", ["dividend", "divisor"]),
]


def test_registry_matches_paper():
    assert [(t.name, t.description, t.parameter_names) for t in MATH_TOOLS] == PAPER
    assert MATH_TOOL_NAMES == tuple(p[0] for p in PAPER)
    assert get_tool("subtract").parameters[0].description == "The number to subtract from"
    assert get_tool("sum_numbers").parameters[0].description == "Array of numbers to sum"
    search = ALL_TOOLS["wikipedia_search"]
    assert search.description == "Search Wikipedia for a given query."
    assert search.parameter_names == ["query", "top_n"]
    assert [p.type for p in search.parameters] == ["string", "integer"]


def test_schemas_openai_format():
    s = schemas("math")
    assert len(s) == 12
    add = s[0]
    assert add["type"] == "function"
    assert add["function"]["name"] == "add"
    assert add["function"]["parameters"]["required"] == ["firstNumber", "secondNumber"]
    assert add["function"]["parameters"]["properties"]["firstNumber"] == {
        "type": "number",
        "description": "The first number",
    }
    assert schemas("search")[0]["function"]["parameters"]["required"] == ["query"]


def test_callables_are_the_registry_schema():
    # TRL renders a dict tool as-is (tests/test_prompt_identity.py renders through TRL itself)
    for fn in callables("math") + callables("search"):
        assert dict(fn) == get_tool(fn.__name__).schema()


def test_callables_execute_and_raise_on_invalid():
    fns = {f.__name__: f for f in callables("math")}
    assert fns["multiply"](firstNumber=12, secondNumber=34) == "408"
    with pytest.raises(ToolError, match="division by zero"):
        fns["divide"](numerator=1, denominator=0)


VALID = [
    ("add", {"firstNumber": 2, "secondNumber": 3}, "5"),
    ("add", {"firstNumber": 0.1, "secondNumber": 0.2}, repr(0.1 + 0.2)),
    ("subtract", {"minuend": 10, "subtrahend": 15}, "-5"),
    ("multiply", {"firstNumber": 123, "secondNumber": 456}, "56088"),
    ("divide", {"numerator": 10, "denominator": 4}, "2.5"),
    ("divide", {"numerator": 12, "denominator": 4}, "3"),
    ("sum_numbers", {"numbers": [1, 2, 3.5]}, "6.5"),
    ("sum_numbers", {"numbers": []}, "0"),
    ("floor", {"number": -2.5}, "-3"),
    ("ceil", {"number": 2.1}, "3"),
    ("round_number", {"number": 2.5}, "3"),
    ("round_number", {"number": -2.5}, "-3"),
    ("round_number", {"number": 2.49}, "2"),
    ("power", {"base": 2, "exponent": 10}, "1024"),
    ("power", {"base": 4, "exponent": 0.5}, "2"),
    ("power", {"base": 2, "exponent": -1}, "0.5"),
    ("sqrt", {"number": 144}, "12"),
    ("sqrt", {"number": 2}, repr(math.sqrt(2))),
    ("abs_value", {"number": -7.25}, "7.25"),
    ("modulo", {"dividend": 17, "divisor": 5}, "2"),
    ("modulo", {"dividend": -7, "divisor": 3}, "2"),
    # numbers spelled as strings are accepted, as calculator servers do
    ("add", {"firstNumber": "2", "secondNumber": " 3.5 "}, "5.5"),
]


@pytest.mark.parametrize("name,args,expected", VALID)
def test_valid_calls(name, args, expected):
    obs = execute(name, args)
    assert obs.ok, obs.error
    assert obs.content == expected
    assert obs.error is None


def test_arguments_as_json_string():
    assert execute("add", '{"firstNumber": 1, "secondNumber": 2}').content == "3"


INVALID = [
    ("nope", {}, "unknown tool"),
    ("", {}, "no tool name"),
    (None, {}, "no tool name"),
    ("add", {"firstNumber": 1}, "missing required argument"),
    ("add", {"firstNumber": 1, "secondNumber": 2, "third": 3}, "unexpected argument"),
    ("add", {"a": 1, "b": 2}, "unexpected argument"),
    ("add", {"firstNumber": "two", "secondNumber": 2}, "non-numeric string"),
    ("add", {"firstNumber": True, "secondNumber": 2}, "boolean"),
    ("add", {"firstNumber": [1], "secondNumber": 2}, "must be a number"),
    ("add", {"firstNumber": None, "secondNumber": 2}, "must be a number"),
    ("add", [1, 2], "must be a JSON object"),
    ("add", "{not json", "not valid JSON"),
    ("divide", {"numerator": 1, "denominator": 0}, "division by zero"),
    ("modulo", {"dividend": 1, "divisor": 0}, "modulo by zero"),
    ("sqrt", {"number": -4}, "negative"),
    ("power", {"base": 10, "exponent": 10**9}, "too large"),
    ("power", {"base": 0, "exponent": -1}, "negative power"),
    ("power", {"base": -8, "exponent": 0.5}, "fractional power"),
    ("multiply", {"firstNumber": 1e99, "secondNumber": 1e99}, "too large"),
    ("add", {"firstNumber": float("nan"), "secondNumber": 1}, "finite"),
    ("add", {"firstNumber": float("inf"), "secondNumber": 1}, "finite"),
    ("sum_numbers", {"numbers": 5}, "must be an array"),
    ("sum_numbers", {"numbers": [1, "x"]}, "element 1"),
    ("floor", {"number": "1e999"}, "finite"),
]


@pytest.mark.parametrize("name,args,message", INVALID)
def test_invalid_calls_never_raise(name, args, message):
    obs = execute(name, args)
    assert not obs.ok
    assert obs.content == ""
    assert message in obs.error


def test_invalid_call_message_is_error_json():
    obs = execute("divide", {"numerator": 1, "denominator": 0})
    assert obs.as_message_content() == '{"error": "division by zero"}'


def test_wikipedia_search_backend_pluggable():
    obs = execute("wikipedia_search", {"query": "Paris"})
    assert not obs.ok and "no retrieval backend" in obs.error
    backend = InMemoryBM25(
        [
            Passage("Paris", "Paris is the capital and most populous city of France."),
            Passage("Berlin", "Berlin is the capital of Germany."),
            Passage("Madrid", "Madrid is the capital of Spain."),
        ]
    )
    ex = Executor(search=backend)
    obs = ex.execute("wikipedia_search", {"query": "capital of France", "top_n": 2})
    assert obs.ok
    assert obs.content.startswith("Doc 1 (Title: Paris)")
    assert "Doc 2" in obs.content and "Doc 3" not in obs.content
    assert not ex.execute("wikipedia_search", {"query": "x", "top_n": "many"}).ok
    assert not ex.execute("wikipedia_search", {"query": 3}).ok
    # the backend belongs to that executor only: nothing is routed process-wide
    assert not execute("wikipedia_search", {"query": "capital of France"}).ok
    assert callables("search", ex)[0](query="capital of Spain", top_n=1).startswith("Doc 1 (Title: Madrid)")
