"""Expression parser: tokenize, parse (recursive descent) and evaluate arithmetic, per task.

Pure Python through and through — the shape of a template engine, a config language or a
query parser: every step is bytecode, so it scales only where bytecode runs in parallel.
"""

from __future__ import annotations

import re

KIND = "cpu"
PARAMS = {
    "tasks": {"default": 8, "min": 1, "max": 4096, "doc": "expression batches per timed call"},
    "expressions": {"default": 200, "min": 1, "max": 1_000_000, "doc": "expressions per batch"},
}

_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


def _tokens(text: str) -> list:
    return [(int(number) if number else op) for number, op in _TOKEN.findall(text)]


class _Parser:
    def __init__(self, tokens: list) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expr(self) -> int:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> int:
        value = self.factor()
        while self.peek() in ("*", "%"):
            op, rhs = self.take(), self.factor()
            value = value * rhs if op == "*" else value % (rhs or 1)
        return value

    def factor(self) -> int:
        token = self.take()
        if token == "(":
            value = self.expr()
            self.take()  # ")"
            return value
        if token == "-":
            return -self.factor()
        return token


def _expression(n: int) -> str:
    return f"({n} + {n % 7} * ({n % 13} - {n % 5})) * {1 + n % 3} - ({n} % {2 + n % 9}) + -{n % 4}"


def _expected(n: int) -> int:
    return (n + n % 7 * (n % 13 - n % 5)) * (1 + n % 3) - (n % (2 + n % 9)) + -(n % 4)


def make_tasks(params: dict) -> list:
    count = params["expressions"]
    return [range(seed * count, (seed + 1) * count) for seed in range(params["tasks"])]


def run_task(numbers: range) -> int:
    # A loop, not sum(... for n in numbers): on CPython 3.14 an InterpreterPoolExecutor runs
    # this function with only the globals its own code names, and a generator expression's
    # names (_Parser, ...) would be missing in the sub-interpreter (README: "the traps").
    total = 0
    for n in numbers:
        total += _Parser(_tokens(_expression(n))).expr()
    return total


def check(params: dict, tasks: list, results: list) -> None:
    expected = [sum(_expected(n) for n in numbers) for numbers in tasks]
    if results != expected:
        raise AssertionError(f"expr_parser: got {results[:3]}..., expected {expected[:3]}...")
