"""Linking GSM8K chain numbers to their sources: the rules `perturb.plan_item` reads a solution with.

Every number inside an annotation or in the prose must come from somewhere: a question number (`var`), a
percentage form of one (`pct`), an earlier step (`step`) or a constant the question justifies (`const`). A
value with several possible sources ties them (every draw must give them one value), so a misreading can cost
an item but never change a twin's answer; a number nothing explains is a `Skip`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from fractions import Fraction

from tinyeval.audit.perturb.chain import NUMBER, WORD_NUMBER, Step, parse_number, read_number, word_value
from tinyeval.audit.perturb.prose import CALCULATION

F = Fraction
# Constants a solution may use without a number in the question: units and "twice"/"half"-style words.
# Non-integers need a word in the question that justifies them, else a "0.5" could be 30 minutes in hours.
UNIT_CONSTANTS = frozenset(map(F, (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 24, 52, 60, 100, 1000, 365, 3600)))
# Other constants need a word of the question that justifies them (a coin or bill, two units, a month's name,
# the letters of the alphabet, the states of the USA).
FRACTION_WORDS: dict[Fraction, str] = {
    F(1, 2): r"half|halves", F(1, 4): r"quarter|fourth", F(3, 4): r"three[- ](?:quarters|fourths)",
    F(1, 3): r"third", F(2, 3): r"two[- ]thirds", F(1, 10): r"tenth|\bdimes?\b", F(1, 100): r"percent|%|penn",
    F(3, 2): r"half|one and a half", F(1, 5): r"fifth", F(1, 20): r"\bnickels?\b",
    # 25 cents: "quarters", or one "quarter" (not "a quarter of") beside another coin or cents
    F(25): r"\bquarters\b|^(?=[\s\S]*\bquarter\b(?!\s+of\b))(?=[\s\S]*\b(?:cents?|nickels?|dimes?|penn(?:y|ies))\b)",
    F(20): r"\btwenties\b", F(26): r"\balphabet\b", F(50): r"\bstates\b[\s\S]*\b(?:USA\b|U\.S\.(?!\w)|United States\b)",
    F(16): r"(?s)^(?=.*\bpounds?\b)(?=.*\bounces?\b)", F(5280): r"(?s)^(?=.*\bmiles?\b)(?=.*\b(?:feet|foot)\b)",
    F(28): r"(?-i:February)", F(30): r"(?-i:\b(?:April|June|September|November)\b)",
    F(31): r"(?-i:\b(?:January|March|May|July|August|October|December)\b)",
}
# A number word after one of these counts named things ("the three have", "all four"): a label, not a quantity.
LABEL_BEFORE = re.compile(r"\b(?:the|these|those|all|both|its|their|his|her)\s+$", re.IGNORECASE)
# ...and so is a number before "of them" ("Only two of them have over 20 points": counted, not a question number).
LABEL_AFTER = re.compile(r"\s+of\s+(?:them|those|these|us|you)\b", re.IGNORECASE)
# A number before one of these is a fraction's numerator ("two thirds" is 2/3, never 4/3): fixed.
FRACTION_AFTER = re.compile(r"\s*(?:halves|thirds|quarters|fourths|fifths|sixths|sevenths|eighths|ninths|tenths)\b",
                            re.IGNORECASE)
# The "=" (and a "$") between a prose calculation and its annotation: "2 - 1 = $<<2-1=1>>".
EQUALS_BEFORE = re.compile(r"[^\S\n]*(?:=|\bequals\b|\bis equal to\b)[^\S\n]*\$?$")
# "x=<<40=40>>40", "4m=<<32=32>>32": an unknown's value stated without its calculation.
UNKNOWN_BEFORE = re.compile(r"(?<![\w.])\d*[A-Za-z]\s*=\s*\$?$")
# A percentage p% enters a chain as p/100, 1 + p/100 (an increase) or 1 - p/100 (a discount).
PCT_FORMS: dict[str, Callable[[Fraction], Fraction]] = {
    "of": lambda p: p / 100, "up": lambda p: 1 + p / 100, "down": lambda p: 1 - p / 100,
}
# Words that make a question number also readable as a constant ("2 bolts ... half that much": /2).
UNIT_WORDS: dict[Fraction, str] = {F(k): w for k, w in {
    2: r"\b(?:half|halves|twice|doubl\w*|pairs?|two|both|pints?)\b", 3: r"\b(?:thirds?|tripl\w*|thrice|three|yards?)\b",
    4: r"\b(?:quarters?|fourths?|four|quadrupl\w*|quarts?)\b", 5: r"\b(?:nickels?|five|weekdays?|Friday)\b", 7: r"\b(?:week|seven)", 12: r"\b(?:dozen|month|twelve|feet|foot)",
    24: r"\bday", 60: r"\b(?:hour|minute)", 100: r"percent|%|\bcent|\bpenn(?:y|ies)\b|\bnickels?\b|\bdimes?\b", 52: r"\bweek", 365: r"\byear",
    1000: r"\bthousand", 10: r"\b(?:dimes?|ten)\b", 25: r"\bquarter",
}.items()}
# A step result that equals a conversion factor may be used as that factor instead ("$400/4 = 100 a week ...
# 100-60 = 40%" is the 100 of "60%"; "120/60 = 2 minutes" is the 60 of seconds to minutes; "12/4" is the 4 of
# "a quarter", not 12/3 = 4): the two readings are tied when the question names both units of the conversion
# (one word for a multiplier word or a coin). One unit alone converts nothing, so "30 + 60 bees" in a question
# about hours, or "24/4 pages" in one about days, reads as the step. Percent: see `_percent_hundred`.
CONVERSIONS: dict[Fraction, tuple[tuple[str, ...], ...]] = {
    **{v: ((w,),) for v, w in UNIT_WORDS.items() if v in (2, 3, 4, 5, 10, 25, 1000)},
    F(7): ((r"\bweek", r"\bdays?\b"), (r"\bseven\b",)), F(24): ((r"\bdays?\b", r"\bhour"),),
    F(12): ((r"\bdozen",), (r"\btwelve\b",), (r"\bmonth", r"\byear"), (r"\b(?:feet|foot)\b", r"\binch")),
    F(52): ((r"\bweek", r"\byear"),), F(365): ((r"\byear", r"\bdays?\b"),),
    F(60): ((r"\bhour", r"\bminute"), (r"\bminute", r"\bsecond")), F(100): ((r"\bcents?\b|\bpenn(?:y|ies)\b|\bnickels?\b|\bdimes?\b", r"\$|\bdollar"),),
}



@dataclass(frozen=True)
class Ref:
    """Where one number of a chain comes from: kind var|pct|step|const, a key, and a form: a pct form, or
    "cents" for an answer asked in cents whose chain ends in dollars ($0.25 -> #### 25)."""

    kind: str
    key: Fraction | int  # var/pct/const: the question value; step: the step index
    form: str = ""


@dataclass
class Var:
    """A question number that may change; every occurrence of the same value changes together."""

    value: Fraction
    texts: list[str]
    percent: bool
    cents: bool = False  # "40 cents" enters a dollar chain as .40

    def forms(self) -> dict[str, Callable[[Fraction], Fraction]]:
        """The ways this number may enter a chain besides itself: p% as p/100, 1 + p/100, 1 - p/100."""
        return PCT_FORMS if self.percent else {"of": PCT_FORMS["of"]} if self.cents else {}


class Skip(Exception):
    """An item that cannot be perturbed safely; the message is the reason counted in Coverage."""



def _fixed_token(question: str, m: re.Match) -> bool:
    """Numbers that are labels, not quantities: 3rd, 10am, 5 pm, 3:30, 1/2, years, and 0 or 1 (grammar)."""
    before, after = question[max(0, m.start() - 1):m.start()], question[m.end():m.end() + 1]
    value = parse_number(m.group())
    year = "," not in m.group() and value.denominator == 1 and 1900 <= value <= 2100
    clock = re.match(r"\s*(?:[ap]\.?m\b|o'clock)", question[m.end():m.end() + 10], re.IGNORECASE)
    fraction = FRACTION_AFTER.match(question, m.end())
    return after.isalpha() or after in (":", "/") or before in (":", "/") or year or bool(clock or fraction) or \
        value in (0, 1)


def _label_word(text: str, m: re.Match) -> bool:
    """Number words that name or count named things, not quantities: "Sally Two" (a capital inside a
    sentence), "the three have", a fraction's "two" in "two thirds", and "zero"/"one" (grammar)."""
    sentence_start = re.search(r"(?:^|[.!?:\n])[ \t\"']*$", text[:m.start()])
    return bool(m.group()[0].isupper() and not sentence_start or LABEL_BEFORE.search(text[max(0, m.start() - 12):m.start()])
                or FRACTION_AFTER.match(text, m.end()) or LABEL_AFTER.match(text, m.end()) or word_value(m.group()) in (0, 1))


def _next_word(text: str, pos: int) -> str:
    """The word right after a number ("3 apples" -> "apples"), lowercased."""
    m = re.match(r"\s*([A-Za-z]+)", text[pos:pos + 40])
    return m.group(1).lower() if m else ""


def number_tokens(text: str) -> list[tuple[re.Match, Fraction, bool]]:
    """Every number of a question, in digits or in words, with its value and whether it is a label (kept)."""
    found = [(m, parse_number(m.group()), _fixed_token(text, m)) for m in NUMBER.finditer(text)]
    found += [(m, word_value(m.group()), _label_word(text, m)) for m in WORD_NUMBER.finditer(text)]
    return sorted(found, key=lambda t: t[0].start())


def question_vars(question: str) -> tuple[dict[Fraction, Var], set[Fraction]]:
    """The question's free numbers (digits and words alike) by value, and the values that must stay."""
    found: dict[Fraction, Var] = {}
    fixed: set[Fraction] = set()
    for m, value, label in number_tokens(question):
        if label:
            fixed.add(value)
            continue
        percent = bool(re.match(r"\s*(?:%|percent)", question[m.end():]))
        cents = bool(re.match(r"\s*(?:cents?\b|¢)", question[m.end():]))
        var = found.setdefault(value, Var(value, [], percent))
        var.texts.append(m.group())
        var.percent |= percent
        var.cents |= cents
    for m in re.finditer(r"(?<![\d/])(\d+)/(\d+)(?![\d/])", question):  # "1/4 pound": the fraction itself
        if int(m.group(2)):
            fixed.add(F(int(m.group(1)), int(m.group(2))))
    if re.search(r"\bhundred\b", question, re.IGNORECASE):
        fixed.add(F(100))
    for value in fixed & set(found):  # one value both fixed and free: keep every occurrence fixed
        del found[value]
    return found, fixed


def _sources(question: str, steps: list[Step], plan_vars: dict[Fraction, Var], fixed: set[Fraction],
             consts: set[Fraction]) -> dict[Fraction, set[tuple]]:
    """Every way a value can arise in this item: a question number (free or fixed), a percentage form, a
    step result, a constant, a unit word of the question."""
    found: dict[Fraction, set[tuple]] = {}
    for v, var in plan_vars.items():
        found.setdefault(v, set()).add(("var", v))
        for form, fn in var.forms().items():
            found.setdefault(fn(v), set()).add(("pct", v, form))
    for v in fixed | consts:
        found.setdefault(v, set()).add(("fixed", v))
    for j, step in enumerate(steps):
        found.setdefault(step.result, set()).add(("step", j))
    # a unit word guards a question number against a unit reading ("2 bolts ... half"); a number word
    # that is itself that question number ("three" as 3) is no second reading
    unit_text = WORD_NUMBER.sub(lambda m: "" if word_value(m.group()) in plan_vars else m.group(), question)
    for v, words in UNIT_WORDS.items():
        if v in plan_vars and re.search(words, unit_text, re.IGNORECASE):
            found.setdefault(v, set()).add(("fixed", v))
    for v in {step.result for step in steps} & set(CONVERSIONS):  # a step result guarded the same way
        if any(all(re.search(w, unit_text, re.IGNORECASE) for w in pair) for pair in CONVERSIONS[v]) or \
                v == 100 and _percent_hundred(question, steps, plan_vars):
            found.setdefault(v, set()).add(("fixed", v))
    return found


def _percent_hundred(question: str, steps: list[Step], plan_vars: dict[Fraction, Var]) -> bool:
    """Whether a 100 may be the whole of a percentage: the question asks for a percent ("what percent"), or
    one of its percentages enters a step as the bare number ("100 - 60" for "60%"). Percentages that enter only
    as 0.6 or 1.25 need no 100, so "80 + 60 + 100" after "80 x 1.25 = 100" reads as the step."""
    asked = re.search(r"(?<![\d\s])\s*(?:percent|%)|\b(?:what|which)\s+(?:percent|percentage)", question, re.IGNORECASE)
    raw = {leaf.value for step in steps for leaf in step.leaves}
    return bool(asked) or any(var.percent and v in raw for v, var in plan_vars.items())


def available(sources: dict[Fraction, set[tuple]], value: Fraction, before_step: int,
               prose: bool = False) -> set[tuple]:
    """Sources of `value` that exist before step `before_step` runs (later steps cannot feed it); prose
    may also say "1" on its own ("1 serving"), which is not a step's input. Several steps with the same
    result are all available and so tied: recency misread "18 + 18" (two different steps) as the latest
    18 twice, and "30 minutes for the first train" (step 2) as the newer half hour (step 3)."""
    last = before_step + 1 if prose else before_step  # "He makes $10.5 because 3 x 3.5 = <<3*3.5=10.5>>"
    found = {s for s in sources.get(value, ()) if s[0] != "step" or s[1] < last}
    return found | ({("fixed", F(1))} if prose and value == 1 and not found else set())


def link(value: Fraction, i: int, results: list[Fraction], plan_vars: dict[Fraction, Var],
          fixed: set[Fraction], question: str) -> Ref:
    """The source of one number of step `i`: the latest earlier step, else a question number, else a
    percentage form, else a constant the question justifies. Ambiguous values are tied (see plan_item),
    so which of several equal sources is chosen never changes a result."""
    prior = [j for j in range(i) if results[j] == value]
    if prior:
        return Ref("step", prior[-1])
    if value in plan_vars:
        return Ref("var", value)
    pcts = [Ref("pct", v.value, form) for v in plan_vars.values() for form, fn in v.forms().items()
            if fn(v.value) == value]
    if pcts:
        return pcts[0]
    if value in fixed or value in UNIT_CONSTANTS or value == 1:
        return Ref("const", value)
    word = FRACTION_WORDS.get(value)
    if word and re.search(word, question, re.IGNORECASE):
        return Ref("const", value)
    raise Skip("unexplained constant in a step")


def prose_numbers(solution: str, steps: list[Step], words: Collection[Fraction] = ()) -> list[tuple[re.Match, int]]:
    """Numbers of the solution's prose with the index of the next step; result echoes and `#### N` left out.

    GSM8K writes each result right after its annotation ("<<9*2=18>>18"); that echo is the step's result
    by position, and the final `#### N` is the answer, so neither needs to be read by value. Number words
    count only when their value is in `words` (the free question numbers): "she eats three" must change
    with the question's "three", while "two-thirds" or "one serving" are no question number.
    """
    bounds = [0, *(s.end for s in steps)]
    ends = [*(s.start for s in steps), len(solution)]
    final = re.search(r"####.*$", solution.rstrip())
    out = []
    for k, (lo, hi) in enumerate(zip(bounds, ends)):
        for m in NUMBER.finditer(solution, lo, hi):
            echo = k > 0 and m.start() == lo
            if not echo and not (final and m.start() >= final.start()):
                out.append((m, k))
        out += [(m, k) for m in WORD_NUMBER.finditer(solution, lo, hi) if word_value(m.group()) in words]
    return sorted(out, key=lambda t: t[0].start())


def prose_echoes(solution: str, steps: list[Step]) -> dict[int, tuple[int, int]]:
    """Prose numbers that restate an annotation's own expression, by start offset: (step, leaf).

    "The cost of a pen is $2 - $1 = $<<2-1=1>>1": the "2" and "1" before the "=" are the leaves of 2-1,
    written out. Read by value, "$1" could also be the step's result and "$2" a "half" constant, and each
    such tie pins the step; read by position, they are the leaves and change with them. A calculation counts
    as a restatement only when its last numbers equal the leaves in order, it reads as a calculation
    (`CALCULATION`) and it ends in an "=" right before the annotation.
    """
    out: dict[int, tuple[int, int]] = {}
    for i, step in enumerate(steps):
        eq = EQUALS_BEFORE.search(solution, max(0, step.start - 24), step.start)
        if not eq or len(step.leaves) < 2:
            continue
        lo = max(solution.rfind("\n", 0, eq.start()) + 1, steps[i - 1].end if i else 0)
        written = list(NUMBER.finditer(solution, lo, eq.start()))[-len(step.leaves):]
        if len(written) == len(step.leaves) and \
                [parse_number(m.group()) for m in written] == [leaf.value for leaf in step.leaves] and \
                CALCULATION.fullmatch(solution[written[0].start():eq.start()].rstrip()):
            out |= {m.start(): (i, k) for k, m in enumerate(written)}
    return out


def solved_mentally(solution: str, steps: list[Step], i: int) -> bool:
    """Step `i` states an unknown's value ("x=<<40=40>>40") that no earlier step computed: the equation was
    solved in the head, and its value may equal a question number by chance ("Eight more than four times
    the mugs is 40": m=8), which would link the answer to that number."""
    step = steps[i]
    return not step.leaves[1:] and step.expr.strip() == step.result_text.strip() and \
        bool(UNKNOWN_BEFORE.search(solution, max(0, step.start - 12), step.start)) and \
        step.result not in {s.result for s in steps[:i]}


def read_uses(question: str, solution: str, steps: list[Step], plan_vars: dict[Fraction, Var],
               fixed: set[Fraction], consts: set[Fraction]) -> tuple[dict[Fraction, set[tuple]], list[frozenset]]:
    """Every value's possible sources, and the ties among them: the sources of each number a step or the
    prose uses where more than one is available. Raises Skip for a prose number nothing explains."""
    sources = _sources(question, steps, plan_vars, fixed, consts)
    uses = [(leaf.value, i, False) for i, step in enumerate(steps) for leaf in step.leaves]
    prose = prose_numbers(solution, steps, set(plan_vars))
    # "the two girls" may echo the question's "Two girls"; "the two amounts" counts something else
    counted = {(value, _next_word(question, m.end())) for m, value, _ in number_tokens(question)}
    if any(m.group()[0].isalpha() and _label_word(solution, m)
           and (word_value(m.group()), _next_word(solution, m.end())) not in counted for m, _ in prose):
        raise Skip("number word in the solution names things")
    echoes = prose_echoes(solution, steps)
    uses += [(read_number(m.group()), k, True) for m, k in prose if m.start() not in echoes]
    if any(not available(sources, v, k, prose) for v, k, prose in uses):
        raise Skip("unexplained number in solution prose")
    ties = list(dict.fromkeys(frozenset(found) for v, k, prose in uses
                              if len(found := available(sources, v, k, prose)) > 1))
    return sources, ties


def tied_step(ties: list[frozenset], v: Fraction) -> int | None:
    """The step a question number must equal when its one tie holds only steps besides it, else None."""
    mine = [tie for tie in ties if ("var", v) in tie]
    others = mine[0] - {("var", v)} if len(mine) == 1 else {("fixed",)}
    return min(s[1] for s in others) if all(s[0] == "step" for s in others) else None


def derivable(question: str, solution: str, steps: list[Step], plan_vars: dict[Fraction, Var], fixed: set[Fraction],
              unused: dict[Fraction, Var], consts: set[Fraction]) -> dict[Fraction, Var]:
    """Question numbers outside the chain that can follow a step instead of staying fixed.

    "James has four times as many as Dorothy ... 12 / 3 = 4; 4 * 4 = 16": the chain reads both 4s as the
    step (the latest source), so "four" is outside it, yet tied to the step; fixed, it pins 12 / 3 to 4 and
    no draw exists. Set to the step's new value in every draw, either reading of every 4 gives one chain.
    A number qualifies only if its one tie holds nothing but steps (no constant, no other question number);
    the others stay fixed, and a number the prose reads otherwise keeps the item's skip reason as before.
    """
    candidates = dict(unused)
    while candidates:
        try:
            _, ties = read_uses(question, solution, steps, plan_vars | candidates,
                                fixed | (set(unused) - set(candidates)), consts)
        except Skip:
            return {}
        keep = {v: var for v, var in candidates.items() if tied_step(ties, v) is not None}
        if keep == candidates:
            return keep
        candidates = keep
    return {}
