"""A seeded family of arithmetic word problems solved with the 12 math tools.

Each problem comes with its ground truth and its *solution plan*: the list of tool calls (name,
arguments, result) that solves it, 1 to 4 calls. The plan is executed with the project's own
tool executor when the problem is built, so the answer is exactly what the tools return.

Splits (``generate(split, n, seed)``):

- ``train`` / ``tune`` / ``test`` (in-domain): families that use only :data:`IN_DOMAIN_TOOLS`
  (add, subtract, multiply, divide, sum_numbers, round_number, floor). Each split draws
  numbers, names and wordings from its own random stream; ``tune`` is the held-out split for
  choosing training settings (issue #11), so ``test`` is never looked at while tuning.
- ``probe`` (in-domain): a fourth stream of the same families, for a fixed held-out set scored
  *during* training (``mentor.train.probe``), so neither ``test`` nor ``tune`` is used for it.
- ``ood`` (out-of-domain): every problem needs a tool held out of training
  (:data:`HELD_OUT_TOOLS`: power, sqrt, modulo, ceil, abs_value; 5 families) or a
  composition of training tools in a chain training never shows (5 families: rounding
  *before* multiplying, adding before multiplying, dividing a difference, rounding a mean,
  dividing a product). ``meta["ood_kind"]`` says which. The compositions keep the split
  measurable for small students, which rarely pick a tool they were never trained on.

Numbers are large enough that a small model cannot reliably do them "in its head" (3-4 digit
products, 4-5 digit sums) and answers are exact: integers or short decimals. Item ``i`` of a
split depends only on ``(split, seed, i)``, so asking for more items extends the list without
changing the first ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mentor.tools.executor import execute_local, format_result

SPLITS = ("train", "tune", "test", "ood", "probe")
IN_DOMAIN_TOOLS = ("add", "subtract", "multiply", "divide", "sum_numbers", "round_number", "floor")
HELD_OUT_TOOLS = ("power", "sqrt", "modulo", "ceil", "abs_value")

NAMES = (
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Keira", "Liam",
    "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yusuf", "Zoe",
)
PLACES = ("bakery", "bookshop", "farm", "warehouse", "school", "cinema", "garage", "library", "factory", "market")
ITEMS = (
    ("notebook", "notebooks"), ("lamp", "lamps"), ("chair", "chairs"), ("jar of honey", "jars of honey"),
    ("bicycle tyre", "bicycle tyres"), ("ticket", "tickets"), ("bag of rice", "bags of rice"),
    ("pair of socks", "pairs of socks"), ("battery pack", "battery packs"), ("plant pot", "plant pots"),
)
CONTAINERS = (("box", "boxes"), ("crate", "crates"), ("carton", "cartons"), ("tray", "trays"), ("van", "vans"))
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class PlanError(RuntimeError):
    """A generated plan step failed to execute (a bug in a family, never user input)."""


@dataclass
class _Plan:
    steps: list[dict[str, Any]] = field(default_factory=list)

    def call(self, name: str, say: str, **arguments: Any) -> int | float:
        obs = execute_local(name, arguments)
        if not obs.ok:
            raise PlanError(f"{name}({arguments}) failed: {obs.error}")
        self.steps.append({"name": name, "arguments": arguments, "result": obs.content, "say": say})
        value = float(obs.content)
        return int(value) if value.is_integer() and "." not in obs.content and "e" not in obs.content else value


def _fmt(x: int | float) -> str:
    return format_result(x)


def _money(x: int | float) -> str:
    return f"${_fmt(x)}"


# ----------------------------------------------------------------- in-domain families
# Each family: rng -> (question, plan, final sentence). Wording is picked from several
# templates; names, items and numbers are drawn at random.


def _bulk_cost(r: random.Random, p: _Plan):
    name, (one, many) = r.choice(NAMES), r.choice(ITEMS)
    qty, price = r.randint(120, 2400), r.randint(13, 389)
    q = r.choice(
        [
            f"{name} orders {qty} {many} for the {r.choice(PLACES)}. Each {one} costs ${price}. How many dollars does the order cost?",
            f"A {one} sells for ${price}. What is the total price, in dollars, of {qty} {many}?",
            f"The {r.choice(PLACES)} needs {qty} {many} at ${price} apiece. What do they cost altogether, in dollars?",
        ]
    )
    total = p.call("multiply", f"The cost is {qty} times ${price}.", firstNumber=qty, secondNumber=price)
    return q, f"The order costs {_money(total)}."


def _order_plus_extra(r: random.Random, p: _Plan):
    name, (_, many), (c1, cs) = r.choice(NAMES), r.choice(ITEMS), r.choice(CONTAINERS)
    boxes, per, extra = r.randint(24, 480), r.randint(12, 96), r.randint(35, 990)
    q = r.choice(
        [
            f"{name} has {boxes} {cs} with {per} {many} in each {c1}, plus {extra} loose {many}. How many {many} does {name} have in total?",
            f"A delivery brings {boxes} {cs} of {many}, {per} per {c1}. The shelf already holds {extra} {many}. How many {many} are there now?",
            f"There are {extra} {many} in stock and {boxes} more {cs} arrive, each holding {per}. How many {many} are in stock after the delivery?",
        ]
    )
    packed = p.call("multiply", f"First count the {many} in the {cs}: {boxes} x {per}.", firstNumber=boxes, secondNumber=per)
    total = p.call("add", f"Then add the {extra} other {many}.", firstNumber=packed, secondNumber=extra)
    return q, f"In total there are {_fmt(total)} {many}."


def _budget_left(r: random.Random, p: _Plan):
    name, (one, many) = r.choice(NAMES), r.choice(ITEMS)
    qty, price = r.randint(15, 240), r.randint(17, 420)
    budget = qty * price + r.randint(50, 25_000)
    q = r.choice(
        [
            f"{name} has a budget of ${budget} and buys {qty} {many} at ${price} each. How many dollars are left?",
            f"The {r.choice(PLACES)} spends part of its ${budget} budget on {qty} {many} costing ${price} each. How much money remains, in dollars?",
            f"After buying {qty} {many} for ${price} per {one}, how many dollars remain from ${budget}?",
        ]
    )
    cost = p.call("multiply", f"The purchase costs {qty} x ${price}.", firstNumber=qty, secondNumber=price)
    left = p.call("subtract", f"Subtract the cost from the ${budget} budget.", minuend=budget, subtrahend=cost)
    return q, f"{_money(left)} is left."


def _average(r: random.Random, p: _Plan):
    k = r.choice([2, 4, 5, 8]) if r.random() < 0.5 else r.randint(3, 7)
    xs = [r.randint(150, 9800) for _ in range(k)]
    if k not in (2, 4, 5, 8):  # keep the mean exact: make the sum divisible by k
        xs[-1] += (-sum(xs)) % k
    place = r.choice(PLACES)
    days = DAYS[:k] if k <= 7 else [f"week {i + 1}" for i in range(k)]
    listed = ", ".join(f"{x} on {d}" if k <= 7 else f"{x} in {d}" for x, d in zip(xs, days))
    q = r.choice(
        [
            f"The {place} counted visitors: {listed}. What was the average number of visitors per period?",
            f"Sales at the {place} were {listed}. What is the mean of these sales figures?",
            f"A sensor at the {place} logged {', '.join(map(str, xs))} units in {k} readings. What is the average reading?",
        ]
    )
    total = p.call("sum_numbers", "Add up all the values.", numbers=xs)
    mean = p.call("divide", f"Divide the total by the {k} values.", numerator=total, denominator=k)
    return q, f"The average is {_fmt(mean)}."


def _full_containers(r: random.Random, p: _Plan):
    (one, many), (c1, cs) = r.choice(ITEMS), r.choice(CONTAINERS)
    size = r.randint(7, 48)
    n = r.randint(500, 20_000)
    if n % size == 0:
        n += r.randint(1, size - 1)
    q = r.choice(
        [
            f"A factory makes {n} {many}. Each {c1} holds {size} of them. How many {cs} can be completely filled?",
            f"{r.choice(NAMES)} packs {n} {many} into {cs} of {size}. How many full {cs} are there?",
            f"How many full {cs} of {size} {many} can be made from {n} {many}?",
        ]
    )
    ratio = p.call("divide", f"Divide the {n} {many} by {size} per {c1}.", numerator=n, denominator=size)
    full = p.call("floor", "Only complete containers count, so take the floor.", number=ratio)
    return q, f"{_fmt(full)} {cs} can be filled."


def _split_round(r: random.Random, p: _Plan):
    people = r.choice([3, 6, 7, 9, 11, 12, 13, 14, 15, 17])
    bill = r.randint(400, 60_000)
    if bill % people == 0:
        bill += r.randint(1, people - 1)
    q = r.choice(
        [
            f"A group of {people} friends shares a bill of ${bill} equally. Rounded to the nearest dollar, how much does each pay?",
            f"${bill} of prize money is split evenly among {people} winners. What is each share, rounded to the nearest whole dollar?",
            f"{r.choice(NAMES)}'s team of {people} splits ${bill} of costs equally. How many dollars is each share, to the nearest dollar?",
        ]
    )
    share = p.call("divide", f"Divide ${bill} by {people}.", numerator=bill, denominator=people)
    rounded = p.call("round_number", "Round the share to the nearest dollar.", number=share)
    return q, f"Each pays about {_money(rounded)}."


def _two_products(r: random.Random, p: _Plan):
    (o1, m1), (o2, m2) = r.sample(ITEMS, 2)
    a, pa, b, pb = r.randint(12, 480), r.randint(11, 299), r.randint(12, 480), r.randint(11, 299)
    q = r.choice(
        [
            f"{r.choice(NAMES)} buys {a} {m1} at ${pa} each and {b} {m2} at ${pb} each. What is the total cost in dollars?",
            f"An invoice lists {a} {m1} (${pa} per {o1}) and {b} {m2} (${pb} per {o2}). What is the invoice total, in dollars?",
            f"The {r.choice(PLACES)} sold {a} {m1} for ${pa} each and {b} {m2} for ${pb} each. How many dollars did it take in?",
        ]
    )
    c1 = p.call("multiply", f"Cost of the {m1}: {a} x ${pa}.", firstNumber=a, secondNumber=pa)
    c2 = p.call("multiply", f"Cost of the {m2}: {b} x ${pb}.", firstNumber=b, secondNumber=pb)
    total = p.call("add", "Add the two costs.", firstNumber=c1, secondNumber=c2)
    return q, f"The total is {_money(total)}."


def _weekly_profit(r: random.Random, p: _Plan):
    (one, many) = r.choice(ITEMS)
    k = r.randint(3, 6)
    sold = [r.randint(40, 900) for _ in range(k)]
    price = r.randint(12, 95)
    costs = r.randint(500, sum(sold) * price // 2)
    listed = ", ".join(f"{x} on {d}" for x, d in zip(sold, DAYS[:k]))
    q = r.choice(
        [
            f"A stall sold {many} at ${price} each: {listed}. Its costs were ${costs}. What was the profit in dollars?",
            f"The {r.choice(PLACES)} sells {many} for ${price}. Sales were {listed}, and expenses came to ${costs}. How many dollars of profit is that?",
        ]
    )
    n = p.call("sum_numbers", f"Total {many} sold.", numbers=sold)
    revenue = p.call("multiply", f"Revenue: the total times ${price}.", firstNumber=n, secondNumber=price)
    profit = p.call("subtract", f"Subtract the ${costs} of costs.", minuend=revenue, subtrahend=costs)
    return q, f"The profit is {_money(profit)}."


def _share_after_expenses(r: random.Random, p: _Plan):
    k = r.randint(3, 5)
    incomes = [r.randint(800, 9_900) for _ in range(k)]
    expense = r.randint(300, sum(incomes) // 3)
    people = r.choice([3, 4, 6, 7, 8, 9])
    q = r.choice(
        [
            f"A club raised ${', $'.join(map(str, incomes))} at {k} events and spent ${expense} on equipment. "
            f"The rest is shared equally among {people} teams in whole dollars (any remainder stays in the bank). How many dollars does each team get?",
            f"{k} fundraisers brought in ${', $'.join(map(str, incomes))}. After paying ${expense} in fees, the money is split evenly "
            f"between {people} charities, whole dollars only. How much does each charity receive?",
        ]
    )
    total = p.call("sum_numbers", "Add up what the events raised.", numbers=incomes)
    rest = p.call("subtract", f"Subtract the ${expense} spent.", minuend=total, subtrahend=expense)
    share = p.call("divide", f"Split the rest among {people}.", numerator=rest, denominator=people)
    if isinstance(share, float):
        share = p.call("floor", "Only whole dollars are paid out, so take the floor.", number=share)
    return q, f"Each gets {_money(share)}."


# ------------------------------------------------------------- out-of-domain families


def _square_side(r: random.Random, p: _Plan):
    side = r.randint(23, 640)
    area = side * side
    perimeter = r.random() < 0.5
    tail = "How many metres of fence go around it?" if perimeter else "How long is one side, in metres?"
    q = r.choice(
        [
            f"A square garden has an area of {area} square metres. {tail}",
            f"{r.choice(NAMES)} owns a square plot covering {area} square metres. {tail}",
        ]
    )
    s = p.call("sqrt", "The side of a square is the square root of its area.", number=area)
    if not perimeter:
        return q, f"Each side is {_fmt(s)} metres."
    fence = p.call("multiply", "The perimeter is four sides.", firstNumber=s, secondNumber=4)
    return q, f"The fence is {_fmt(fence)} metres long."


def _growth(r: random.Random, p: _Plan):
    factor, steps = r.choice([(2, r.randint(5, 14)), (3, r.randint(3, 9)), (5, r.randint(2, 6))])
    start = r.randint(3, 90)
    word = {2: "doubles", 3: "triples", 5: "grows five-fold"}[factor]
    q = r.choice(
        [
            f"A culture starts with {start} bacteria and {word} every hour. How many bacteria are there after {steps} hours?",
            f"A rumour reaches {start} people on day 0 and the number who have heard it {word} each day. How many people have heard it after {steps} days?",
        ]
    )
    g = p.call("power", f"The growth factor over {steps} periods is {factor}^{steps}.", base=factor, exponent=steps)
    n = p.call("multiply", f"Multiply by the starting {start}.", firstNumber=start, secondNumber=g)
    return q, f"There are {_fmt(n)}."


def _leftover(r: random.Random, p: _Plan):
    (one, many), (c1, cs) = r.choice(ITEMS), r.choice(CONTAINERS)
    size = r.randint(7, 60)
    if r.random() < 0.5:
        n = r.randint(500, 30_000)
        q = f"{n} {many} are packed into {cs} of {size}. How many {many} are left over once every full {c1} is packed?"
        left = p.call("modulo", f"The remainder of {n} divided by {size}.", dividend=n, divisor=size)
    else:
        parts = [r.randint(200, 4_000) for _ in range(3)]
        q = (
            f"Three shifts produced {parts[0]}, {parts[1]} and {parts[2]} {many}. They are packed in {cs} of {size}. "
            f"How many {many} do not fit into a full {c1}?"
        )
        n = p.call("sum_numbers", "Total production.", numbers=parts)
        left = p.call("modulo", f"The remainder after packing in {cs} of {size}.", dividend=n, divisor=size)
    return q, f"{_fmt(left)} are left over."


def _containers_needed(r: random.Random, p: _Plan):
    cap = r.randint(9, 75)
    n = r.randint(300, 12_000)
    if n % cap == 0:
        n += r.randint(1, cap - 1)
    q = r.choice(
        [
            f"{n} students go on a trip and each bus seats {cap}. How many buses are needed?",
            f"A ferry carries {cap} cars per crossing. How many crossings are needed to carry {n} cars?",
        ]
    )
    ratio = p.call("divide", f"Divide {n} by the capacity {cap}.", numerator=n, denominator=cap)
    need = p.call("ceil", "A partly full trip still counts, so round up.", number=ratio)
    return q, f"{_fmt(need)} are needed."


def _distance_apart(r: random.Random, p: _Plan):
    a, b = r.randint(-950, 400), r.randint(-950, 400)
    while a >= b:
        a, b = r.randint(-950, 400), r.randint(-950, 400)
    q = r.choice(
        [
            f"A diver is at {a} metres and a drone at {b} metres relative to sea level. Taking the first minus the second, how far apart are they (a distance is never negative)?",
            f"The temperature in a lab freezer is {a} units and in a second freezer {b} units. What is the size of the difference between the first and the second?",
        ]
    )
    d = p.call("subtract", "Subtract the second value from the first.", minuend=a, subtrahend=b)
    dist = p.call("abs_value", "A distance is the absolute value of the difference.", number=d)
    return q, f"They are {_fmt(dist)} apart."


def _round_then_multiply(r: random.Random, p: _Plan):
    """Training tools in an order training never shows: round first, then multiply and add."""
    (one, many) = r.choice(ITEMS)
    w = round(r.uniform(10, 90), 1)
    qty, fee = r.randint(25, 400), r.randint(30, 900)
    rate = r.choice([3, 4, 6, 7, 9])
    q = (
        f"A {one} weighs {w} kg, which the shipping company rounds to the nearest whole kilogram before charging. "
        f"It charges ${rate} per rounded kilogram. What is the charge for shipping {qty} {many} plus a ${fee} handling fee?"
    )
    kg = p.call("round_number", f"Round {w} kg to the nearest kilogram.", number=w)
    per = p.call("multiply", f"Charge per {one}: {_fmt(kg)} kg x ${rate}.", firstNumber=kg, secondNumber=rate)
    cost = p.call("multiply", f"For {qty} {many}.", firstNumber=per, secondNumber=qty)
    total = p.call("add", f"Add the ${fee} fee.", firstNumber=cost, secondNumber=fee)
    return q, f"The charge is {_money(total)}."


def _group_then_price(r: random.Random, p: _Plan):
    """Novel composition: add *before* multiplying (training only ever adds products)."""
    (one, many), name = r.choice(ITEMS), r.choice(NAMES)
    a, b, price = r.randint(120, 2_400), r.randint(120, 2_400), r.randint(13, 389)
    q = r.choice(
        [
            f"{name} orders {a} {many} for the morning and {b} {many} for the evening, at ${price} per {one}. How many dollars is that in total?",
            f"Two shops ask for {a} and {b} {many}. Each {one} costs ${price}. What do both orders cost together, in dollars?",
        ]
    )
    n = p.call("add", f"First the number of {many}: {a} + {b}.", firstNumber=a, secondNumber=b)
    cost = p.call("multiply", f"Then times ${price}.", firstNumber=n, secondNumber=price)
    return q, f"The cost is {_money(cost)}."


def _net_share(r: random.Random, p: _Plan):
    """Novel composition: subtract, then divide (training subtracts last or divides a sum)."""
    people = r.choice([2, 4, 5, 8, 10, 16, 20, 25])
    prize, fee = r.randint(2_000, 90_000), r.randint(100, 1_999)
    prize += (fee - prize) % people  # (prize - fee) divisible by people: an exact share
    q = r.choice(
        [
            f"A prize of ${prize} has a ${fee} fee taken off, and the rest is split equally among {people} winners. How many dollars does each winner get?",
            f"{r.choice(NAMES)}'s club earns ${prize}, pays ${fee} for the hall and shares what is left equally between {people} members. What is each member's share, in dollars?",
        ]
    )
    rest = p.call("subtract", f"Take the ${fee} off.", minuend=prize, subtrahend=fee)
    share = p.call("divide", f"Split the rest among {people}.", numerator=rest, denominator=people)
    return q, f"Each gets {_money(share)}."


def _rounded_average(r: random.Random, p: _Plan):
    """Novel composition: sum -> divide -> round (training rounds a quotient, never a mean)."""
    k = r.choice([3, 6, 7])
    xs = [r.randint(150, 9_800) for _ in range(k)]
    if sum(xs) % k == 0:
        xs[-1] += 1
    place = r.choice(PLACES)
    listed = ", ".join(f"{x} on {d}" for x, d in zip(xs, DAYS[:k]))
    q = f"The {place} had {listed}. What was the average per day, rounded to the nearest whole number?"
    total = p.call("sum_numbers", "Add up the days.", numbers=xs)
    mean = p.call("divide", f"Divide by the {k} days.", numerator=total, denominator=k)
    rounded = p.call("round_number", "Round the average.", number=mean)
    return q, f"About {_fmt(rounded)} per day."


def _cost_per_person(r: random.Random, p: _Plan):
    """Novel composition: multiply, then divide (training never divides a product)."""
    (one, many) = r.choice(ITEMS)
    people = r.choice([2, 4, 5, 8, 10])
    qty, price = r.randint(12, 600) * people, r.randint(11, 299)
    q = r.choice(
        [
            f"{people} flatmates buy {qty} {many} at ${price} each and share the cost equally. How many dollars does each pay?",
            f"A team of {people} orders {qty} {many} costing ${price} per {one} and splits the bill evenly. What is each person's part, in dollars?",
        ]
    )
    cost = p.call("multiply", f"The bill: {qty} x ${price}.", firstNumber=qty, secondNumber=price)
    each = p.call("divide", f"Split it {people} ways.", numerator=cost, denominator=people)
    return q, f"Each pays {_money(each)}."


Family = Callable[[random.Random, _Plan], tuple[str, str]]

IN_DOMAIN_FAMILIES: dict[str, Family] = {
    "bulk_cost": _bulk_cost,
    "order_plus_extra": _order_plus_extra,
    "budget_left": _budget_left,
    "average": _average,
    "full_containers": _full_containers,
    "split_round": _split_round,
    "two_products": _two_products,
    "weekly_profit": _weekly_profit,
    "share_after_expenses": _share_after_expenses,
}
#: family -> why it is out of domain
OOD_FAMILIES: dict[str, tuple[Family, str]] = {
    "square_side": (_square_side, "held_out_tool"),
    "growth": (_growth, "held_out_tool"),
    "leftover": (_leftover, "held_out_tool"),
    "containers_needed": (_containers_needed, "held_out_tool"),
    "distance_apart": (_distance_apart, "held_out_tool"),
    "round_then_multiply": (_round_then_multiply, "novel_composition"),
    "group_then_price": (_group_then_price, "novel_composition"),
    "net_share": (_net_share, "novel_composition"),
    "rounded_average": (_rounded_average, "novel_composition"),
    "cost_per_person": (_cost_per_person, "novel_composition"),
}


@dataclass
class SyntheticProblem:
    id: str
    question: str
    answer: str
    plan: list[dict[str, Any]]
    final: str
    family: str
    split: str
    ood_kind: str | None = None

    @property
    def tools(self) -> list[str]:
        return [s["name"] for s in self.plan]

    def meta(self) -> dict[str, Any]:
        return {
            "source": "synthetic",
            "family": self.family,
            "split": self.split,
            "ood_kind": self.ood_kind,
            "plan": self.plan,
            "final": self.final,
            "tools": self.tools,
        }


def make_problem(split: str, seed: int, index: int) -> SyntheticProblem:
    """Item ``index`` of ``split`` for ``seed`` (deterministic)."""
    if split not in SPLITS:
        raise ValueError(f"unknown synthetic split {split!r}; choose one of {', '.join(SPLITS)}")
    r = random.Random(f"mentor-synthetic:{split}:{seed}:{index}")
    if split == "ood":
        family = r.choice(sorted(OOD_FAMILIES))
        fn, kind = OOD_FAMILIES[family]
    else:
        family = r.choice(sorted(IN_DOMAIN_FAMILIES))
        fn, kind = IN_DOMAIN_FAMILIES[family], None
    plan = _Plan()
    question, final = fn(r, plan)
    answer = plan.steps[-1]["result"]
    return SyntheticProblem(
        id=f"syn-{split}-s{seed}-{index:05d}",
        question=question,
        answer=answer,
        plan=plan.steps,
        final=final,
        family=family,
        split=split,
        ood_kind=kind,
    )


def generate(split: str = "train", n: int = 200, seed: int = 0) -> list[SyntheticProblem]:
    """``n`` problems of ``split`` (train / tune / test / ood / probe)."""
    return [make_problem(split, seed, i) for i in range(n)]
