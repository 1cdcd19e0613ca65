"""GSM8K calculator chains: safe exact arithmetic, number tokens, and re-execution of a solution.

A GSM8K solution annotates every calculation as `<<expr=value>>` ("48/2 = <<48/2=24>>24 clips"). Read as a
chain, these steps are a small program over the question's numbers; re-executing it with exact `Fraction`
arithmetic is how every perturbed item is verified. Expressions are parsed with `ast` and only numbers,
`+ - * / **`, unary minus and parentheses are allowed: annotation text is data, never code.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

# A number as it is written in GSM8K prose: "1,200", "$80,000", "2.5", ".25". Thousands commas only between
# groups of three digits, so "3,4" reads as two numbers. No sign: "-" is prose or an operator.
NUMBER = re.compile(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])")
ANNOTATION = re.compile(r"<<([^<>]*)>>")
FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")
_MAX_EXPONENT = 12  # `2**1000000` is valid syntax; a calculator step never needs it


class ChainError(ValueError):
    """A solution whose chain cannot be read or does not re-execute to what it claims."""


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}


@functools.lru_cache(maxsize=65536)
def _parse(expr: str) -> ast.expr:
    try:
        return ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise ChainError(f"not an arithmetic expression: {expr!r}") from None


def evaluate(expr: str, values: Sequence[Fraction] | None = None) -> Fraction:
    """The exact value of an arithmetic expression such as `80000*1.5` or `(3+4)/2`.

    With `values`, the expression's numbers are replaced, in the order they are written, by those values:
    the same computation re-run on new inputs without rewriting any text. Raises ChainError for anything
    but numbers and + - * / ** ( ): no names, calls or attributes.
    """
    source = expr.strip()
    given = iter(values) if values is not None else None

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and \
                not isinstance(node.value, bool):
            if given is not None:
                return next(given)
            return Fraction(ast.get_source_segment(source, node))  # exact: "0.1" is 1/10
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)  # left first: numbers are read in written order
            if isinstance(node.op, ast.Div) and right == 0:
                raise ChainError(f"division by zero in {expr!r}")
            if isinstance(node.op, ast.Pow) and (right.denominator != 1 or abs(right) > _MAX_EXPONENT):
                raise ChainError(f"unsupported exponent in {expr!r}")
            return _BINOPS[type(node.op)](left, right)
        raise ChainError(f"disallowed syntax {type(node).__name__} in {expr!r}")

    return walk(_parse(source))


def parse_number(text: str) -> Fraction:
    """'1,200' -> 1200, '.25' -> 1/4, '$5' -> 5 (exact)."""
    return Fraction(text.replace(",", "").replace("$", "").strip())


def decimals(value: Fraction) -> int | None:
    """Digits after the point needed to write `value` exactly; None if it never terminates (1/3)."""
    for places in range(13):
        if (value * 10**places).denominator == 1:
            return places
    return None


def format_number(value: Fraction, like: str = "") -> str:
    """Write `value` exactly, in the style of `like`: thousands commas and trailing decimal places kept.

    '1,200' styled -> '1,500'; '2.50' styled -> '3.75'; '.5' styled -> '.25'. Raises ChainError for values
    with no finite decimal form.
    """
    places = decimals(value)
    if places is None:
        raise ChainError(f"{value} has no finite decimal form")
    like_places = len(like.split(".")[1]) if "." in like else 0
    places = max(places, like_places if like_places >= 2 else 0)  # keep money's cents: 2.50, not 2.5
    sign = "-" if value < 0 else ""
    whole, frac = divmod(int(abs(value) * 10**places), 10**places)
    text = f"{whole}" + (f".{frac:0{places}d}" if places else "")
    if "," in like:
        text = f"{whole:,}" + text[len(str(whole)):]
    if like.startswith(".") and text.startswith("0."):
        text = text[1:]
    return sign + text


@dataclass(frozen=True)
class Leaf:
    """One number inside an annotation's expression; `start`/`end` index the expression string."""

    start: int
    end: int
    text: str
    value: Fraction


@dataclass(frozen=True)
class Step:
    """One `<<expr=value>>` annotation: where it sits in the solution, its leaves and its written result."""

    start: int  # span of the whole `<<...>>` in the solution text
    end: int
    expr: str
    leaves: tuple[Leaf, ...]
    result_text: str
    result: Fraction  # the value as written after `=`


def parse_steps(solution: str) -> list[Step]:
    """Every annotation of a solution, in order. Raises ChainError for an annotation it cannot read."""
    steps = []
    for m in ANNOTATION.finditer(solution):
        body = m.group(1)
        if body.count("=") != 1:
            raise ChainError(f"annotation without exactly one '=': <<{body}>>")
        expr, result_text = body.split("=")
        leaves = tuple(Leaf(n.start(), n.end(), n.group(), parse_number(n.group())) for n in NUMBER.finditer(expr))
        if "," in expr:
            raise ChainError(f"thousands comma inside an expression: <<{body}>>")
        steps.append(Step(m.start(), m.end(), expr, leaves, result_text, evaluate(result_text)))
    return steps


def final_answer(solution: str) -> Fraction:
    m = FINAL.search(solution.strip())
    if not m:
        raise ChainError("solution without a final '#### N' line")
    return parse_number(m.group(1))


def verify_chain(solution: str) -> list[Step]:
    """Re-execute every step: each expression must evaluate exactly to the value it claims.

    Returns the steps. Raises ChainError naming the first step that disagrees, so a perturbed item whose
    rewrite broke any link of the chain never reaches a benchmark file.
    """
    steps = parse_steps(solution)
    for i, step in enumerate(steps):
        got = evaluate(step.expr)
        if got != step.result:
            raise ChainError(f"step {i + 1} <<{step.expr}={step.result_text}>> evaluates to {got}")
    return steps


def question_numbers(question: str) -> list[re.Match]:
    """Number tokens of a question, in order."""
    return list(NUMBER.finditer(question))


# Numbers written as words ("three", "twenty-five"); a hyphen on either side is part of another word
# ("two-thirds", "one-third"), so those are not read.
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
WORD_NUMBER = re.compile(rf"(?<![\w-])(?:(?:{'|'.join(_TENS)})(?:-(?:{'|'.join(_SMALL[1:10])}))?|"
                         rf"(?:{'|'.join(_SMALL)}))(?![\w-])", re.IGNORECASE)


def word_value(text: str) -> Fraction:
    """'three' -> 3, 'Twenty-five' -> 25."""
    tens, _, unit = text.lower().partition("-")
    if tens in _SMALL:
        return Fraction(_SMALL.index(tens))
    return Fraction(20 + 10 * _TENS.index(tens) + (_SMALL.index(unit) if unit else 0))


def number_word(value: Fraction, like: str = "") -> str:
    """25 -> 'twenty-five', capitalised like `like`. Raises ChainError for values with no word (0..99 only)."""
    if value.denominator != 1 or not 0 <= value < 100:
        raise ChainError(f"{value} has no number word")
    n = int(value)
    word = _SMALL[n] if n < 20 else _TENS[n // 10 - 2] + (f"-{_SMALL[n % 10]}" if n % 10 else "")
    return word.capitalize() if like[:1].isupper() else word


def read_number(text: str) -> Fraction:
    """The value of a number token written in digits or as a word."""
    return word_value(text) if text[:1].isalpha() else parse_number(text)


def write_number(value: Fraction, like: str) -> str:
    """`value` written the way `like` is: as a word for a word, else digits in its style."""
    return number_word(value, like) if like[:1].isalpha() else format_number(value, like)


_ARTICLE = re.compile(r"(?<![\w'])([Aa])(n?)([ \t]+)$")


def with_article(before: str, number: str) -> str:
    """`before` (the text up to a number) with a final "a"/"an" that agrees with `number` as it is read:
    "an 8-day trip", "a 10-day trip", "an eleven-year-old" (a twin must not read "a 8-day trip")."""
    m = _ARTICLE.search(before)
    if not m:
        return before
    whole = number.replace(",", "").replace("$", "").split(".")[0]
    vowel = number[:1].lower() in "aeiou" or whole.startswith("8") or \
        (whole.startswith(("11", "18")) and len(whole) % 3 == 2)
    return before[:m.start()] + m.group(1) + ("n" if vowel else "") + m.group(3)
