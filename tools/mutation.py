"""Mutation testing of the core modules against their own tests: `python -m tools.mutation [MODULE...]`.

Each mutant changes one thing in one module (a flipped comparison, `and`/`or` swapped, an arithmetic
operator swapped, a `not` dropped, a constant changed, a statement dropped); the module's own test
files then run against it. A mutant the tests pass is a *survivor*: a change of behaviour nothing
notices. The score is killed / (mutants - known equivalent ones); see docs/mutation-testing.md.

Slow (one pytest run per mutant), so it is not part of the test suite: run it after changing one of
these modules or its tests. The module file is rewritten in place while a mutant runs and always
restored, even on Ctrl-C or SIGTERM; do not edit it meanwhile.
"""

from __future__ import annotations

import argparse
import ast
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.mutation_targets import EQUIVALENT, TARGETS

ROOT = Path(__file__).resolve().parent.parent

_FLIPPED_COMPARISONS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
_SWAPPED_OPERATORS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv, ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr,
}  # fmt: skip
_SYMBOLS = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
    ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
    ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.BitOr: "|", ast.BitAnd: "&", ast.And: "and",
    ast.Or: "or",
}  # fmt: skip
_DROPPABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise, ast.If, ast.For,
              ast.With, ast.Try, ast.Assert, ast.Continue, ast.Break, ast.Delete)  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    change: str
    source_line: str

    def key(self) -> tuple[str, str]:
        """What identifies a mutant across edits of the module: its line's text and the change."""
        return (self.source_line, self.change)


class _Mutator(ast.NodeTransformer):
    """Numbers every mutation site in a fixed traversal order; applies the one numbered `target`."""

    def __init__(self, tree: ast.Module, target: int | None) -> None:
        self.target = target
        self.sites: list[tuple[int, str]] = []
        self._skipped = {id(node) for node in _unmutated(tree)}

    def _site(self, node: ast.AST, change: str) -> bool:
        self.sites.append((getattr(node, "lineno", 0), change))
        return len(self.sites) - 1 == self.target

    def visit(self, node: ast.AST) -> ast.AST:
        if id(node) in self._skipped:
            return node
        return super().visit(node)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if isinstance(node, _DROPPABLE) and self._site(node, "drop statement"):
            return ast.copy_location(ast.Pass(), node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for position, op in enumerate(node.ops):
            flipped = _FLIPPED_COMPARISONS[type(op)]
            if self._site(node, f"{_SYMBOLS[type(op)]} -> {_SYMBOLS[flipped]}"):
                node.ops[position] = flipped()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._site(node, f"{_SYMBOLS[type(node.op)]} -> {_SYMBOLS[other]}"):
            node.op = other()
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        self._swap_operator(node)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self._swap_operator(node)
        return self.generic_visit(node)

    def _swap_operator(self, node: ast.BinOp | ast.AugAssign) -> None:
        swapped = _SWAPPED_OPERATORS.get(type(node.op))
        if swapped and self._site(node, f"{_SYMBOLS[type(node.op)]} -> {_SYMBOLS[swapped]}"):
            node.op = swapped()

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._site(node, "drop not"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            changed: bool | int | float | str | bytes = not value
        elif isinstance(value, int | float):
            changed = value + 1
        elif isinstance(value, str):
            changed = f"XX{value}XX"
        elif isinstance(value, bytes):
            changed = b"XX" + value + b"XX"
        else:
            return node
        if self._site(node, f"{value!r} -> {changed!r}"):
            return ast.copy_location(ast.Constant(changed), node)
        return node


def _unmutated(tree: ast.Module) -> Iterator[ast.AST]:
    """Nodes left alone: docstrings, imports, annotations, `__all__`, and logging calls."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and isinstance(body, list):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                yield first
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.arg) and node.annotation is not None:
            yield node.annotation
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            yield node.returns
        if isinstance(node, ast.AnnAssign):
            yield node.annotation
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            yield node
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") in ("log", "logger"):
                yield node


def mutants(path: Path) -> list[Mutant]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    mutator = _Mutator(tree, None)
    mutator.visit(tree)
    found, seen = [], Counter[tuple[str, str]]()
    for index, (line, change) in enumerate(mutator.sites):
        text = lines[line - 1].strip() if line else ""
        seen[(text, change)] += 1
        # The same change twice on one line (two `0`s) is told apart by its occurrence.
        nth = seen[(text, change)]
        found.append(Mutant(index, line, change if nth == 1 else f"{change} (#{nth})", text))
    return found


def mutated_source(source: str, index: int) -> str:
    tree = ast.parse(source)
    mutator = _Mutator(tree, index)
    mutated = mutator.visit(tree)
    return ast.unparse(ast.fix_missing_locations(mutated))


def run_tests(tests: list[str], timeout: float) -> tuple[bool, float]:
    """Run `tests`; True if they pass. Bytecode is neither read from nor written to the cache, so a
    mutant of the same size and second as the original cannot be masked by a stale .pyc."""
    started = time.monotonic()
    command = [
        sys.executable,
        "-B",
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run([*command, *tests], cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - started  # a mutant that hangs the tests is caught by them
    return result.returncode == 0, time.monotonic() - started


def _drop_bytecode(path: Path) -> None:
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink()


@dataclass
class Score:
    module: str
    total: int
    killed: int
    equivalent: int
    survivors: list[Mutant]

    @property
    def percent(self) -> float:
        considered = self.total - self.equivalent
        return 100.0 * self.killed / considered if considered else 100.0


def mutation_test(module: str, tests: list[str], verbose: bool) -> Score:
    path = ROOT / module
    original = path.read_text()
    passed, baseline = run_tests(tests, timeout=600)
    if not passed:
        raise SystemExit(f"{module}: its tests fail without any mutant: {' '.join(tests)}")
    known = EQUIVALENT.get(module, {})
    found = mutants(path)
    killed, equivalent, survivors = 0, 0, []
    print(f"{module}: {len(found)} mutants, tests take {baseline:.1f} s", flush=True)
    try:
        for mutant in found:
            if mutant.key() in known:
                equivalent += 1
                continue
            path.write_text(mutated_source(original, mutant.index))
            _drop_bytecode(path)
            survived, _ = run_tests(tests, timeout=baseline * 3 + 10)
            if survived:
                survivors.append(mutant)
            else:
                killed += 1
            if verbose or survived:
                print(f"  {'SURVIVED' if survived else 'killed  '} L{mutant.line}: {mutant.change}"
                      f"    | {mutant.source_line}", flush=True)  # fmt: skip
    finally:
        path.write_text(original)
        _drop_bytecode(path)
    unused = set(known) - {mutant.key() for mutant in found}
    for line, change in sorted(unused):
        print(f"  note: listed as equivalent but no longer generated: {change} | {line}")
    return Score(module, len(found), killed, equivalent, survivors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutation", description=__doc__.split("\n")[0])
    parser.add_argument(
        "modules", nargs="*", help=f"paths of modules to mutate (default: {', '.join(TARGETS)})"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants without running the tests")
    parser.add_argument(
        "--verbose", action="store_true", help="print every mutant's result, not only survivors"
    )
    parser.add_argument("--minimum", type=float, default=90.0, help="exit 1 if a module scores below this %%")
    args = parser.parse_args(argv)
    # A SIGTERM ends the run like Ctrl-C does: through the `finally` that restores the module.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    modules = args.modules or list(TARGETS)
    unknown = [module for module in modules if module not in TARGETS]
    if unknown:
        parser.error(f"no tests are configured for {', '.join(unknown)} (tools/mutation_targets.py)")
    if args.list:
        for module in modules:
            for mutant in mutants(ROOT / module):
                print(f"{module}:{mutant.line}: {mutant.change}    | {mutant.source_line}")
        return 0
    scores = [mutation_test(module, TARGETS[module], args.verbose) for module in modules]
    print("\nmodule                          mutants  equivalent  killed  survived  score")
    for score in scores:
        print(f"{score.module:<32}{score.total:>7}{score.equivalent:>12}{score.killed:>8}"
              f"{len(score.survivors):>10}  {score.percent:5.1f} %")  # fmt: skip
    return 0 if all(score.percent >= args.minimum for score in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
