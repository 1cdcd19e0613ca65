"""Prose calculations: the mental maths a GSM8K solution writes outside `<<>>`, read as chain steps.

Solutions often compute in the prose and annotate nothing, or only an empty `<<44=44>>`:

  "Yuri scored 1/2 (68) + 10 = 44 points"             -> 1/2*(68)+10          (juxtaposition multiplies)
  "Ruins:220(.40)=88"                                 -> 220*(.40)
  "$600/month * 12 months/year = $7200 in a year"     -> 600*12               (unit words are read past)
  "83 plus 91 equals 174", "3.65 divided by .05 equals 73"
  "7 puppies / 20 puppies * 100% = 35%", "20% * 40% = 8%"

`annotate_prose` inserts the missing annotation before the written result, so the prose reads as before and
the calculation becomes one more step of the chain. A chained equation writes its partial results in the prose,
"2 * 4 + 3 * 6 = 8 + 18 = <<2*4+3*6=26>>26": each middle number that stands for a sub-calculation of the
annotated one (8 for 2*4, 18 for 3*6, matched by the shape of the two expressions) gets that sub-calculation
as its own step, "= <<2*4=8>>8 + <<3*6=18>>18 =", so every number of the line has a source. It does so only when the calculation, as read, evaluates
exactly to the written result (like an annotation, it is then checked by `verify_chain`); the linker in
`perturb.plan_item` must still explain every one of its numbers. A misread equation can therefore cost an item,
never produce a twin with a wrong answer.
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction

from tinyeval.audit.perturb.chain import ANNOTATION, NUMBER, ChainError, evaluate, parse_number

_NUM = r"\$?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)%?"
_OP_WORDS = r"(?:x|times|plus|minus|divided|multiplied|by|equals?|is)"
# Words after a number name its unit ("12 months/year", "160 used pieces of straw"): read past, at most six.
_UNIT = rf"(?:[^\S\n]*/[^\S\n]*[A-Za-z]+|[^\S\n]+(?!{_OP_WORDS}\b)[A-Za-z][A-Za-z'’]*)"
_OPERAND = rf"(?:\([^\S\n]*)*{_NUM}{_UNIT}{{0,6}}\)*"
_OP = (r"(?:[^\S\n]*(?:[-+*/×−–]|x(?=[^\S\n]*[\d($.])|\b(?:times|plus|minus|divided by|multiplied by)\b)[^\S\n]*"
       r"|(?<=[\d%)])[^\S\n]*(?=\()|(?<=\))[^\S\n]*(?=[\d.$]))")  # "2(3)", "(1/4)24": multiplication
CALCULATION = re.compile(rf"{_OPERAND}(?:{_OP}{_OPERAND})+[^\S\n]*")
EQUALS = re.compile(r"[^\S\n]*(?:=|\bequals\b|\bis equal to\b)[^\S\n]*\$?")
_TRIVIAL = re.compile(r"<<(\d+(?:\.\d+)?)=\1>>")
# A "result" that goes on ("= 4 * 12 = 48", "= 1 1/2", "= 3/4") is the next expression, not a value.
_CONTINUES = re.compile(r"[^\S\n]*(?:[-+*/x×−–(]|times|plus|minus|divided)[^\S\n]*[\w($.]|[^\S\n]+\d+/\d|/\d")
_TOKEN = re.compile(rf"(?P<num>{_NUM})|(?P<unit>/[^\S\n]*[A-Za-z]+)|(?P<op>[-+*/×−–()]|\bx\b|\btimes\b|\bplus\b|"
                    r"\bminus\b|\bdivided by\b|\bmultiplied by\b)|(?P<word>[A-Za-z][A-Za-z'’]*)")
_SYMBOL = {"x": "*", "×": "*", "times": "*", "multiplied by": "*", "−": "-", "–": "-", "minus": "-",
           "plus": "+", "divided by": "/"}


def _expression(text: str) -> str:
    """A calculation as arithmetic: unit words dropped, word operators as symbols, juxtaposition as `*`;
    `%` left in place for `read_calculation` to resolve."""
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "num":
            token = re.sub(r"[$,]", "", m.group())
            if out and out[-1] == ")":
                out.append("*")
        elif m.lastgroup == "op":
            token = _SYMBOL.get(m.group(), m.group())
            if token == "(" and out and (out[-1] == ")" or out[-1][-1].isdigit() or out[-1][-1] == "%"):
                out.append("*")
        else:
            continue
        out.append(token)
    return "".join(out)


def _starts(text: str) -> list[int]:
    """Where a calculation may begin: a number or "(" that does not continue a word, a number or a mixed
    fraction ("4 1/2 + 1/2" must not be read from its "1/2")."""
    return [m.start() for m in re.finditer(r"[($\d.]", text)
            if not re.search(r"[\w.,$(]$|\d[^\S\n]+$", text[:m.start()])]


def read_calculation(text: str, result: Fraction, percent_result: bool = False) -> str | None:
    """The expression that `text` (everything before an "=") calculates, if it evaluates to `result`.

    Tried from the longest reading to the shortest; `%` is read as nothing ("12/20 x 100% = 60%"), as /100
    ("50 x 20% = 10"), or, when the result is a percentage too, both sides as /100 ("20% * 40% = 8%").
    """
    text = text.rstrip()
    for start in _starts(text):
        if not CALCULATION.fullmatch(text, start):
            continue
        expr = _expression(text[start:])
        variants = [expr.replace("%", ""), expr.replace("%", "/100")]
        if percent_result and "%" in expr:
            variants.append(f"({variants[1]})*100")
        for candidate in dict.fromkeys(variants):
            try:
                if evaluate(candidate) == result:
                    return candidate
            except ChainError:
                continue
    return None


def _segment_start(solution: str, end: int) -> int:
    """A calculation before an "=" starts after the previous line break, annotation, "=", ":" or ";"."""
    cut = max(solution.rfind(c, 0, end) for c in ("\n", ">>", "=", ":", ";"))
    return cut + (2 if solution.startswith(">>", cut) else 1) if cut >= 0 else 0


def annotate_prose(solution: str) -> str:
    """Add `<<expr=value>>` to prose calculations the solution left unannotated, when they re-execute exactly.

    An empty `<<N=N>>` right after a prose calculation ("5,000 + 1,000 = <<6000=6000>>6,000") is replaced by
    that calculation's annotation; a calculation that does not evaluate to its written value is left alone.
    """
    inside = [m.span() for m in ANNOTATION.finditer(solution)]
    edits: list[tuple[int, int, str]] = []
    for eq in EQUALS.finditer(solution):
        if any(a <= eq.start() < b for a, b in inside):
            continue
        trivial = _TRIVIAL.match(solution, eq.end())
        num = NUMBER.match(solution, trivial.end() if trivial else eq.end())
        if not num or _CONTINUES.match(solution, num.end()) or \
                (trivial and parse_number(num.group()) != parse_number(trivial.group(1))):
            continue
        value = parse_number(num.group())
        percent = solution.startswith("%", num.end())
        expr = read_calculation(solution[_segment_start(solution, eq.start()):eq.start()], value, percent)
        if expr:
            edits.append((eq.end(), num.start(), f"<<{expr}={num.group().replace(',', '')}>>"))
    for start, end, text in reversed(edits):
        solution = solution[:start] + text + solution[end:]
    return annotate_chains(solution)


def _sub_steps(full: str, partial: str) -> list[tuple[str, int]] | None:
    """Where `partial` ("8+18") is `full` ("2*4+3*6") with whole sub-calculations replaced by their values:
    each such sub-calculation and the index of the number that stands for it, or None if the two do not have
    the same shape (same operators in the same places, equal numbers elsewhere) or a value is not exact."""
    try:
        big, small = ast.parse(full, mode="eval").body, ast.parse(partial, mode="eval").body
    except SyntaxError:
        return None
    numbers = sorted((n.col_offset, id(n)) for n in ast.walk(small) if isinstance(n, ast.Constant))
    order = {key: k for k, (_, key) in enumerate(numbers)}
    found: list[tuple[str, int]] = []

    def same(a: ast.AST, b: ast.AST) -> bool:
        if isinstance(b, ast.Constant):
            text = ast.get_source_segment(full, a)
            try:
                exact = evaluate(text) == Fraction(ast.get_source_segment(partial, b))
            except (ChainError, ValueError):
                return False
            if exact and not isinstance(a, ast.Constant):
                found.append((re.sub(r"\s+", "", text), order[id(b)]))
            return exact
        if isinstance(a, ast.BinOp) and isinstance(b, ast.BinOp) and type(a.op) is type(b.op):
            return same(a.left, b.left) and same(a.right, b.right)
        if isinstance(a, ast.UnaryOp) and isinstance(b, ast.UnaryOp) and type(a.op) is type(b.op):
            return same(a.operand, b.operand)
        return False

    return found if same(big, small) else None


def annotate_chains(solution: str) -> str:
    """Annotate the partial results of chained equations ("A = B = <<A=v>>v") as steps of their own.

    Each middle expression B between two "=" before an annotation is compared with the annotated expression
    (or, when the annotation is B itself, with the calculation before it): a number of B that stands for a
    sub-calculation of the other gets `<<sub=value>>` in front of it, only when that sub-calculation
    evaluates exactly to the written number.
    """
    edits: list[tuple[int, str]] = []
    for ann in ANNOTATION.finditer(solution):
        expr = ann.group(1).split("=")[0]
        line = max([0, *(at + len(c) for c in ("\n", ">>") if (at := solution.rfind(c, 0, ann.start())) >= 0)])
        cuts = [line, *(p for m in EQUALS.finditer(solution, line, ann.start()) for p in m.span())]
        parts = [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]
        if len(parts) < 2 or solution[cuts[-1]:ann.start()].strip(" $"):
            continue  # no "A = B =" right before this annotation
        for k in range(1, len(parts)):
            lo, hi = parts[k]
            text = solution[lo:hi].strip()
            lo = solution.index(text, lo) if text else lo
            if not text or "%" in text or not CALCULATION.fullmatch(text):
                continue
            written = list(NUMBER.finditer(text))
            before = read_calculation(solution[slice(*parts[k - 1])], evaluate(expr))
            for full in dict.fromkeys(e for e in (expr, before) if e):
                subs = _sub_steps(full, _expression(text))
                if subs and len(written) == len(re.findall(NUMBER, _expression(text))):
                    edits += [(lo + written[j].start(), f"<<{sub}={written[j].group().replace(',', '')}>>")
                              for sub, j in subs]
                    break
    for pos, text in sorted(set(edits), reverse=True):
        solution = solution[:pos] + text + solution[pos:]
    return solution
