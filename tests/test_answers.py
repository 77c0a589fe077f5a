import pytest

from mentor.answers import extract_boxed, math_equal, normalize_answer, qa_exact_match, qa_f1


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{5}", "5"),
        ("\\boxed{1} and then \\boxed{2}", "2"),  # the last one
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("the answer is \\boxed 5.", "5"),
        ("$\\boxed 42$", "42"),
        ("\\fbox{7}", "7"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed{12} then broken \\boxed{3", "12"),  # an unbalanced last box falls back
        ("no box here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "a,b",
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)"),
        ("12", "12.0"),
        ("x^2+1", "1+x^2"),
        ("\\dfrac{3}{4}", "0.75"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\text{5}", "5"),
        ("1,000", "1000"),
    ],
)
def test_math_equal_true(a, b):
    assert math_equal(a, b)
    assert math_equal(b, a)


@pytest.mark.parametrize("a,b", [("3", "4"), ("\\frac{1}{2}", "0.51"), ("", "1"), (None, "1"), ("(3, 4)", "(4, 3)")])
def test_math_equal_false(a, b):
    assert not math_equal(a, b)


def test_math_equal_in_thread():
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        assert ex.submit(math_equal, "\\frac{1}{4}", "0.25").result()


def test_qa_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert qa_exact_match("the Eiffel tower", ["Eiffel Tower"])
    assert qa_exact_match("Paris", ["London", "paris."])
    assert not qa_exact_match("Paris, France", ["Paris"])
    assert not qa_exact_match(None, ["x"])
    assert qa_f1("Paris France", ["Paris"]) == pytest.approx(2 / 3)
    assert qa_f1("a", ["the"]) == 1.0  # both normalise to nothing
    assert qa_f1("Berlin", ["Paris"]) == 0.0
