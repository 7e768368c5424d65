"""The condition language: precedence, units, Kleene logic, and what it refuses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.expr import (
    NO_DATA,
    Binary,
    Call,
    ExprError,
    Number,
    Signal,
    Unary,
    Value,
    ValueType,
    compile_expression,
    parse,
)

LOSS = "client.audio.loss_ratio"
MOS = "client.network.mos"
FROZEN = "client.video.frozen"
FLOOR = "conversation.client.holds_floor"
DISCLOSURE = "session.disclosure"


def value(text: str, snapshot: dict[str, object] | None = None) -> Value:
    expression = compile_expression(text, expect=None)
    return expression.evaluate(snapshot or {})


# --- precedence and arithmetic -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),  # left-associative
        ("12 / 3 / 2", 2.0),
        ("-2 * 3", -6.0),
        ("- -2", 2.0),
        ("2 - -2", 4.0),
        ("1 + 2 == 3", True),
        ("1 < 2 and 3 < 2", False),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not false and false", False),  # not binds tighter than and
        ("not (false and false)", True),
        ("not 1 > 2", True),  # comparison binds tighter than not
        ("true == false", False),
        ("2.5% == 0.025", True),
        ("7.5% == 0.075", True),
        ("250ms == 0.25", True),
        ("2m == 120", True),
        ("1h == 3600", True),
        ("1e3 == 1000", True),
        (".5 == 0.5", True),
    ],
)
def test_operators_bind_and_compute_as_written(text: str, expected: Value) -> None:
    assert value(text) == expected


def test_the_tree_of_a_mixed_condition_has_the_expected_shape() -> None:
    tree, kind = parse(f"{FROZEN} and {FLOOR} or not {DISCLOSURE}")
    assert kind is ValueType.BOOL
    assert tree == Binary(
        "or",
        Binary("and", Signal(FROZEN), Signal(FLOOR)),
        Unary("not", Signal(DISCLOSURE)),
    )


def test_spacing_does_not_change_an_expressions_identity() -> None:
    a = compile_expression(f"count_over({MOS} < 3.6, 5) >= 3")
    b = compile_expression(f"count_over( {MOS}<3.6 ,5 )>=3")
    assert a == b
    assert hash(a) == hash(b)
    assert a.windows == (Call("count_over", Binary("<", Signal(MOS), Number(3.6)), 5.0),)


def test_division_by_zero_is_no_data_not_an_exception() -> None:
    assert value(f"1 / ({LOSS} - 0.5)", {LOSS: 0.5}) is NO_DATA


# --- signals and missing data ---------------------------------------------------------


@pytest.mark.parametrize("missing", [None, float("nan"), float("inf"), "3", "absent"])
def test_a_missing_or_unusable_signal_is_no_data_never_zero(missing: object) -> None:
    snapshot = {} if missing == "absent" else {LOSS: missing}
    assert value(f"{LOSS} > 0.025", snapshot) is NO_DATA
    assert value(f"{LOSS} < 0.025", snapshot) is NO_DATA
    assert value(f"{LOSS} * 0", snapshot) is NO_DATA


def test_booleans_may_arrive_as_zero_or_one_but_not_as_other_numbers() -> None:
    assert value(FROZEN, {FROZEN: 1}) is True
    assert value(FROZEN, {FROZEN: 0.0}) is False
    assert value(FROZEN, {FROZEN: 2}) is NO_DATA


_TRUTH = [True, False, NO_DATA]


def _kleene_and(a: Value, b: Value) -> Value:
    if a is False or b is False:
        return False
    if a is NO_DATA or b is NO_DATA:
        return NO_DATA
    return True


def _kleene_or(a: Value, b: Value) -> Value:
    if a is True or b is True:
        return True
    if a is NO_DATA or b is NO_DATA:
        return NO_DATA
    return False


def _snapshot(a: Value, b: Value) -> dict[str, object]:
    return {FROZEN: None if a is NO_DATA else a, FLOOR: None if b is NO_DATA else b}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(_TRUTH, repeat=2)))
def test_and_or_not_follow_kleene_three_valued_logic(a: Value, b: Value) -> None:
    snapshot = _snapshot(a, b)
    assert value(f"{FROZEN} and {FLOOR}", snapshot) is _kleene_and(a, b)
    assert value(f"{FROZEN} or {FLOOR}", snapshot) is _kleene_or(a, b)
    assert value(f"not {FROZEN}", snapshot) is (NO_DATA if a is NO_DATA else not a)


def test_has_tells_whether_a_signal_is_known_now() -> None:
    text = f"has({LOSS}) and {LOSS} > 0.07"
    assert value(text, {}) is False  # unknown: false, not NO_DATA
    assert value(text, {LOSS: 0.08}) is True
    assert value(text, {LOSS: 0.01}) is False


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_a_known_value_compares_like_python(x: float) -> None:
    assert value(f"{LOSS} > 0.025", {LOSS: x}) is (x > 0.025)
    assert value(f"{LOSS} <= 0.025", {LOSS: x}) is (x <= 0.025)


# --- what the language refuses, with a column ------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        (f"{LOSS} > > 3", 27, "expected a value"),
        (f"{LOSS} = 3", 25, "use =="),
        (f"{FROZEN} && {FLOOR}", 21, "use 'and'"),
        ("client.audio.los_ratio > 1", 1, "unknown signal 'client.audio.los_ratio'"),
        (f"{LOSS}.real > 1", 1, "unknown signal"),
        (f"{LOSS}.__class__ > 1", 1, "unknown signal"),
        ('__import__("os")', 12, "strings are not part"),
        ("__import__(1)", 1, "unknown function '__import__'"),
        (f"eval({LOSS})", 1, "unknown function 'eval'"),
        (f"open({LOSS})", 1, "unknown function 'open'"),
        ("lambda: 1", 7, "unexpected character ':'"),
        (f"[{LOSS}][0] > 1", 1, "indexing"),
        (f"{LOSS} > 1; 2", 28, "unexpected character ';'"),
        (f"{LOSS} ** 2", 26, "expected a value"),
        (f"({LOSS} > 1", 29, "expected ')'"),
        (f"{LOSS} > 1)", 28, "unexpected ')'"),
        ("1 < 2 < 3", 7, "do not chain"),
        (f"{FROZEN} + 1", 21, "'+' needs number operands"),
        (f"{LOSS} and {FROZEN}", 25, "'and' needs bool operands"),
        (f"not {LOSS}", 1, "'not' needs bool operands"),
        (f"{FROZEN} == 1", 21, "compares a bool with a number"),
        (f"{LOSS} > 5min", 27, "unknown unit 'min'"),
        (f"count_over({LOSS} > 0.1, {LOSS})", 43, "constant window"),
        (f"count_over({LOSS} > 0.1, 0.5)", 43, "between 1 s and 3600 s"),
        (f"count_over({LOSS} > 0.1, 2h)", 43, "between 1 s and 3600 s"),
        (f"count_over(avg({LOSS}, 5) > 1, 5)", 12, "inside another windowed function"),
        (f"rises({LOSS}, 5)", 1, "needs a bool as its first argument"),
        (f"avg({FROZEN}, 5)", 1, "needs a number as its first argument"),
        (f"avg({LOSS})", 28, "expected ','"),
        ("", 1, "empty expression"),
        ("and", 1, "expected a value"),
    ],
)
def test_bad_expressions_are_refused_with_the_column_of_the_problem(
    text: str, column: int, fragment: str
) -> None:
    with pytest.raises(ExprError) as caught:
        compile_expression(text, expect=None)
    assert caught.value.column == column, caught.value
    assert fragment in str(caught.value)


def test_a_condition_must_give_a_boolean() -> None:
    with pytest.raises(ExprError, match="must give a bool"):
        compile_expression(f"{LOSS} + 1")
    assert compile_expression(f"{LOSS} + 1", expect=ValueType.NUMBER).type is ValueType.NUMBER


def test_deep_nesting_is_refused_before_python_recursion_runs_out() -> None:
    with pytest.raises(ExprError, match="nests too deeply"):
        compile_expression("(" * 200 + "true" + ")" * 200)
    with pytest.raises(ExprError, match="nests too deeply"):
        compile_expression("not " * 100 + "true")


def test_overlong_expressions_are_refused() -> None:
    with pytest.raises(ExprError, match="longer than"):
        compile_expression(" or ".join(["true"] * 1000))
    # Short enough, but a chain this long would nest the tree past Python's recursion.
    with pytest.raises(ExprError, match="more than 200 operators"):
        compile_expression("1+" * 995 + "1 > 0")


@given(st.text(max_size=60))
def test_arbitrary_text_either_compiles_or_raises_expr_error(text: str) -> None:
    column = 0
    try:
        compile_expression(text, expect=None)
    except ExprError as exc:
        column = exc.column
    else:
        column = 1
    assert 1 <= column <= len(text) + 1
