"""Ties among a question's own numbers that the chain does not compute: every twin must keep them.

The chain links what the solution computes; a question can also state numbers the story ties together
without the solution ever using the tie, and a twin that moves one of them but not the other is incoherent
(a model that fails it tells us nothing about leakage):

  "He has 8 customers. His first 3 customers buy one DVD each. His next 2 customers buy 2 DVDs each. His
   last 3 customers don't buy any."          8 = 3 + 2 + 3: the chain never reads 8; 6, 2, 6 of 8 customers
  "... 3 eggs a day for 30 days and then 5 eggs a day for 30 days. How many dozens for 60 days?"
  "The film lasts 2 hours (120 minutes)."    one quantity stated twice, in two units: 120 = 60 x 2

The rule (`find_relations`), written to flag the story's ties and few coincidences (GSM8K's small numbers
add up to one another all the time: "$13 = $8 + $5", "7 blue birds = 4 + 3"):

  sum         a number equals the sum of two or three others, and every one of them is followed by the same
              unit word ("8 customers" = "3 customers" + "2 customers" + "3 customers"; plural folded,
              "10-day" reads "day"). A value stated twice may be counted twice (30 + 30 = 60 days). Money and
              percentages take no part (prices and rates coincide too often); nor do 0 and 1, nor a number
              followed by a function word ("3 more", "$5 per") rather than a unit.
  product     a number equals the product of two others, shares the unit word of one of them, and its
              sentence says it is a total ("3 boxes of 12 eggs, 36 eggs in all").
  conversion  a number equals another times the factor between their two unit words (2 hours, 120 minutes;
              2 dozen, 24; $1.50, 150 cents).
  stated twice  the same value written twice (also as a word: "three" and "3") is one question number and
              always changes as one (`link.question_vars`); a value both a label and a quantity stays.
  outside sum a number of 10 or more that the chain does not read equals a sum or difference of two or three
              distinct question numbers (no unit needed; `outside_sums`): the terms are held, not recomputed.
  constant sum  a whole constant of the chain that no unit word explains equals the sum of two question
              numbers ("5 girls" = 4 friends + Maria herself; `constant_sums`): the solution added them in its
              head, so a twin moving them would keep 5 and answer wrongly; the terms are held.
  coefficient a question number equal to a coefficient (or a sum of coefficients) of an unknown the
              solution declares ("Let x be ... 4x + x = 40 ... 40 / 5"; `coefficients`): held, for the same reason.

Ties to the calendar are kept too (`bounds`, `calendar_facts`): "five days a week" stays at most 7, "50 weeks a
year" at most 52, a quiz score at most 100, and "there are exactly 4 weeks in April" does not move.

A tie is kept in every draw (`twins.perturb_item`): its number is recomputed from its terms when it may
change (a question number, not a unit constant or a step's follower, tied once); otherwise the tie's free
numbers are held; either way a draw that breaks a tie is refused. An item whose held numbers leave nothing
free, or that finds no draw keeping its ties, is skipped and counted under its own reason.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

from tinyeval.audit.perturb.chain import ANNOTATION
from tinyeval.audit.perturb.link import FRACTION_WORDS, UNIT_WORDS, Skip, number_tokens, read_uses

F = Fraction
# Words after a number that name no unit: the number then takes part in no unit tie.
FUNCTION_WORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "of", "for", "per", "each", "every", "more", "less", "fewer", "than",
    "times", "to", "in", "on", "at", "from", "with", "by", "as", "is", "are", "was", "were", "be", "off", "that",
    "this", "these", "those", "it", "its", "his", "her", "their", "our", "your", "my", "other", "extra",
    "additional", "new", "old"))
IRREGULAR = {"feet": "foot", "people": "person", "children": "child", "men": "man", "women": "woman",
             "teeth": "tooth", "geese": "goose", "mice": "mouse"}
UNIT_AFTER = re.compile(r"[ \t-]*([A-Za-z]+)")
PARTITIVE = re.compile(r"\s+of\s+(?:the|these|those|his|her|their)\s+([A-Za-z]+)", re.IGNORECASE)  # "Six of the packets"
OF_WHAT = re.compile(r"\s+of\s+([A-Za-z]+)")  # "bottles of soda"
# A rate, not an amount that adds up: "2 DVDs each", "3 eggs a day", "$5 per hour"; or a clause that
# begins "Each guest will eat 2 hot dogs".
RATE_AFTER = re.compile(r"\s*(?:each|apiece|per|a|an|every)\b", re.IGNORECASE)
RATE_BEFORE = re.compile(r"\b(?:each|every)\b", re.IGNORECASE)
NO_SUMS = frozenset(("$", "%"))  # money and percentages: prices and rates coincide too often
# (larger unit, smaller unit) -> how many of the smaller make one of the larger
CONVERSION_FACTORS: dict[tuple[str, str], Fraction] = {k: F(v) for k, v in {
    ("hour", "minute"): 60, ("minute", "second"): 60, ("hour", "second"): 3600, ("day", "hour"): 24,
    ("week", "day"): 7, ("year", "month"): 12, ("year", "week"): 52, ("year", "day"): 365, ("foot", "inch"): 12,
    ("yard", "foot"): 3, ("$", "cent"): 100, ("dollar", "cent"): 100, ("pound", "ounce"): 16,
    ("gallon", "quart"): 4, ("quart", "pint"): 2, ("kilometer", "meter"): 1000, ("meter", "centimeter"): 100,
    ("kilogram", "gram"): 1000, ("liter", "milliliter"): 1000,
}.items()}
TOTAL_WORDS = re.compile(r"\b(?:total|in all|altogether|combined|overall)\b", re.IGNORECASE)
OUTSIDE_MIN = 10  # smaller numbers outside the chain coincide with sums of question numbers too often
NUMERIC = frozenset(("outside sum", "constant sum", "coefficient"))  # read from values alone: held only
# How many of a smaller unit fit in a larger one: "five days a week", "50 weeks a year" stay at most that.
PER_UNIT: dict[tuple[str, str], Fraction] = {k: F(v) for k, v in {
    ("day", "week"): 7, ("day", "month"): 31, ("day", "year"): 365, ("week", "month"): 5, ("week", "year"): 52,
    ("month", "year"): 12, ("hour", "day"): 24, ("hour", "week"): 168, ("minute", "hour"): 60,
    ("minute", "day"): 1440, ("second", "minute"): 60,
}.items()}
PER_AFTER = re.compile(r"[ \t-]*(day|week|month|hour|minute|second)s?\b(?:[ \t]+[A-Za-z]+)?[ \t]+(?:a|an|per|each|every|"
                       r"in[ \t]+(?:a|an|each|one|the))[ \t]+(day|week|month|year|hour|minute)\b", re.IGNORECASE)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
# A count that states the calendar: "there are exactly 4 weeks in April", "30 days in a month": it stays.
CALENDAR = re.compile(rf"[ \t-]*(?:days?|weeks?|months?|hours?|minutes?)[ \t]+in[ \t]+(?:(?:a|an|one|the|each|every)"
                      rf"[ \t]+)?(?:week|month|year|day|hour|minute|{_MONTHS})\b", re.IGNORECASE)
SCORES = re.compile(r"\b(?:scores?|scored|quiz(?:zes)?|tests?|exams?)\b", re.IGNORECASE)  # scores out of 100


@dataclass(frozen=True)
class Relation:
    """`value` = factor x (the sum, or for "product" the product, of `terms` with their `signs`)."""

    kind: str  # "sum" | "product" | "conversion" | "outside sum" | "constant sum"
    value: Fraction  # the tied number: a total, a product, a quantity in the smaller unit, a chain constant
    terms: tuple[Fraction, ...]  # what it is made of; a value stated twice and counted twice appears twice
    unit: str = ""  # the unit word its numbers share ("" when none is needed)
    signs: tuple[int, ...] = ()  # +1 / -1 per term (an outside sum may be a difference); () = all +1
    factor: Fraction | int = 1  # conversion: 60 minutes an hour

    @property
    def certain(self) -> bool:
        """A unit tie is the story's and its number may be recomputed; a numeric one is only held."""
        return self.kind not in NUMERIC

    @property
    def enforced(self) -> bool:
        """Every draw must keep it (a draw that breaks it is refused). Not an outside sum: a number the chain
        never reads, so a broken one is an odd question at worst, never a wrong answer."""
        return self.kind != "outside sum"

    def of(self, values: Mapping[Fraction, Fraction]) -> Fraction:
        """The tied number's value when the question numbers take `values` (old -> new; others stay)."""
        xs = [values.get(t, t) * s for t, s in zip(self.terms, self.signs or (1,) * len(self.terms))]
        return self.factor * (math.prod(xs) if self.kind == "product" else sum(xs))

    def holds(self, values: Mapping[Fraction, Fraction]) -> bool:
        return self.of(values) == values.get(self.value, self.value)

    def describe(self) -> str:
        """"8 = 3 + 2 + 3 customer", "120 = 60 x 2 minute"."""
        def num(v: Fraction) -> str:
            return str(v.numerator) if v.denominator == 1 else str(float(v))

        if self.kind == "coefficient":
            return f"{num(self.value)}, {self.unit}"
        if self.kind == "product":
            rhs = " x ".join(map(num, self.terms))
        elif self.kind == "conversion":
            rhs = f"{num(self.factor)} x {num(self.terms[0])}"
        else:
            signs = self.signs or (1,) * len(self.terms)
            rhs = "".join(f"{' + ' if s > 0 else ' - '}{num(t)}" for t, s in zip(self.terms, signs))
            rhs = rhs.removeprefix(" + ").replace(" - ", "-", rhs.startswith(" - "))
        return f"{num(self.value)} = {rhs}" + (f" {self.unit}" if self.unit else "")


@dataclass(frozen=True)
class Token:
    value: Fraction
    unit: str | None  # the singular unit word after it, "$" for money, "%" for a percentage; None: no unit
    start: int
    of: str | None = None  # what the unit is of: "bottles of soda" -> "soda"
    rate: bool = False  # a rate, not an amount: "2 DVDs each", "3 eggs a day", "Each guest eats 2 hot dogs"

    def same_unit(self, other: Token) -> bool:
        """Both count the same thing: one unit word, and no two different "of" words (bottles of soda are no
        bottles of water; "10 bottles" may hold both)."""
        return self.unit == other.unit and (self.of is None or other.of is None or self.of == other.of)


def singular(word: str) -> str:
    """"customers" -> "customer", "inches" -> "inch", "feet" -> "foot" (enough to compare unit words)."""
    word = word.lower()
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


def token(question: str, start: int, end: int, value: Fraction) -> Token:
    """A number at question[start:end] with the unit it counts: the word after it ("Six of the packets" reads
    "packet"), "$" or "%"; None when a function word follows ("3 more")."""
    if question[:start].rstrip().endswith("$"):
        return Token(value, "$", start)
    if re.match(r"\s*(?:%|percent\b)", question[end:]):
        return Token(value, "%", start)
    m = PARTITIVE.match(question, end) or UNIT_AFTER.match(question, end)
    if not m or m.group(1).lower() in FUNCTION_WORDS:
        return Token(value, None, start)
    of = OF_WHAT.match(question, m.end())
    of = of if of and of.group(1).lower() not in FUNCTION_WORDS else None
    clause = question[max(question.rfind(c, 0, start) for c in ".?!;,\n") + 1:start]
    rate = bool(RATE_AFTER.match(question, (of or m).end()) or RATE_BEFORE.search(clause))
    return Token(value, singular(m.group(1)), start, of.group(1).lower() if of else None, rate)


def tokens(question: str) -> list[Token]:
    """The question's quantities (labels, 0 and 1 left out) with their units, in order."""
    return [token(question, m.start(), m.end(), value)
            for m, value, label in number_tokens(question) if not label and value not in (0, 1)]


def _sums(question: str, toks: list[Token]) -> Iterator[Relation]:
    for u in toks:
        if u.unit is None or u.unit in NO_SUMS or u.rate:
            continue
        parts = [t for t in toks if t is not u and u.same_unit(t) and not t.rate and t.value != u.value]
        for k in (2, 3):
            for terms in itertools.combinations(parts, k):
                if sum(t.value for t in terms) == u.value:
                    yield Relation("sum", u.value, tuple(sorted(t.value for t in terms)), u.unit)


def _sentence(text: str, pos: int) -> str:
    start = max(text.rfind(c, 0, pos) for c in ".?!\n") + 1
    ends = [i for i in (text.find(c, pos) for c in ".?!\n") if i >= 0]
    return text[start:min(ends, default=len(text))]


def _products(question: str, toks: list[Token]) -> Iterator[Relation]:
    for u in toks:
        if u.unit is None or u.unit in NO_SUMS or not TOTAL_WORDS.search(_sentence(question, u.start)):
            continue
        for a, b in itertools.combinations([t for t in toks if t is not u and t.value != u.value], 2):
            if a.value * b.value == u.value and (u.same_unit(a) or u.same_unit(b)):
                yield Relation("product", u.value, tuple(sorted((a.value, b.value))), u.unit)


def _conversions(question: str, toks: list[Token]) -> Iterator[Relation]:
    for u, a in itertools.permutations(toks, 2):
        factor = F(12) if a.unit == "dozen" and u.unit not in (None, "dozen") else \
            CONVERSION_FACTORS.get((a.unit, u.unit))
        if factor and a.value * factor == u.value:
            yield Relation("conversion", u.value, (a.value,), u.unit, factor=factor)


# The ties the question's text shows, by kind; `outside_sums` needs the chain and is not among them.
FINDERS: dict[str, Callable[[str, list[Token]], Iterator[Relation]]] = {
    "sum": _sums, "product": _products, "conversion": _conversions,
}


def find_relations(question: str) -> list[Relation]:
    """Every unit tie among the question's numbers (see the module docstring), each once, in a stable order."""
    toks = tokens(question)
    return list(dict.fromkeys(r for find in FINDERS.values() for r in find(question, toks)))


def outside_sums(outside: Collection[Fraction], pool: Collection[Fraction], free: Collection[Fraction]) -> list[Relation]:
    """Numeric ties to numbers the chain does not read: "16 people; 10 want chicken and 6 want pasta", "the
    remaining 24 liters" after 10 + 15 - 1 liters. Any sum or difference of two or three distinct question
    numbers (`pool`, at least one of them `free`) that equals an `outside` number of 10 or more."""
    pool = sorted(set(pool))
    found = []
    for u in sorted(v for v in outside if v >= OUTSIDE_MIN):
        for k in (2, 3):
            for terms in itertools.combinations(pool, k):
                if u in terms or not set(terms) & set(free):
                    continue
                signs = next((s for s in itertools.product((1, -1), repeat=k)
                              if sum(a * b for a, b in zip(s, terms)) == u), None)
                if signs is not None:
                    found.append(Relation("outside sum", u, terms, signs=signs))
    return found


def constant_sums(question: str, consts: Collection[Fraction], pool: Collection[Fraction],
                  free: Collection[Fraction]) -> list[Relation]:
    """A whole constant of the chain that no unit word of the question explains and that equals the sum of
    two question numbers, one of them free: the solution added them in its head. "Maria invited 4 of her
    friends ... She had one water balloon for herself ... 5 girls * 3" (5 = 4 + 1); "60 mph for 2 hours, and
    then 30 mph for 1 hour ... 150 miles/3 hours" (3 = 2 + 1). A twin with 8 friends and "5 girls" would
    have a wrong answer; the terms are held instead."""
    found = []
    for c in sorted(v for v in consts if v.denominator == 1 and v >= 2 and v not in pool):
        words = [w for w in (UNIT_WORDS.get(c), FRACTION_WORDS.get(c)) if w]
        if any(re.search(w, question, re.IGNORECASE) for w in words):
            continue  # "twice", "a week", "an hour", "16 ounces a pound": the unit explains it
        for a, b in itertools.combinations_with_replacement(sorted(set(pool) - {F(0)}), 2):
            if a + b == c and {a, b} & set(free):
                found.append(Relation("constant sum", c, (a, b)))
    return found


def bounds(question: str) -> dict[Fraction, Fraction]:
    """Upper bounds of question numbers that the calendar or a score sets: "five days a week" at most 7, "50
    weeks a year" at most 52, "a 10-hour shift each day" at most 24, a quiz score at most 100 (when it is
    at most 100 to begin with). A twin with "eight days a week" is no question anyone would ask."""
    out: dict[Fraction, Fraction] = {}
    scores = SCORES.search(question)
    for m, value, label in number_tokens(question):
        per = PER_AFTER.match(question, m.end())
        found = [b for b in (PER_UNIT.get((per.group(1).lower(), per.group(2).lower())) if per else None,
                             F(100) if scores else None) if b is not None and value <= b]
        if found and not label:
            out[value] = min(out.get(value, found[0]), *found)
    return out


def calendar_facts(question: str) -> set[Fraction]:
    """Question numbers that state how the calendar is ("exactly 4 weeks in April", "30 days in a month"):
    no draw moves them (a twin with "2 weeks in April" states something false)."""
    return {value for m, value, label in number_tokens(question) if not label and CALENDAR.match(question, m.end())}


UNKNOWN = re.compile(r"\b[Ll]et(?:'s let)?\s+([A-Za-z])\s+(?:be|represent|mark|stand|equal|denote)\b")


def coefficients(solution: str) -> list[Relation]:
    """Question numbers an equation in the solution's prose may have combined in its head.

    "Let x be the shorter piece. The two pieces are 4x and x ... 4x + x = 40 ... 5x = 40. Then dividing 40
    by 5 ..." reads 5 as a constant; "2x + 2x = 100 ... x = 100/4" reads the 4 as the question's "4 kids".
    Both are sums of the unknown's coefficients, worked out in the head: a twin with "6 times longer" or "5
    kids" would keep them and answer wrongly (GSM8K test items 1220 and 999 at seed 0). Every coefficient of
    a declared unknown ("Let x be ...") and every sum of the coefficients on one side of an "=" is returned
    as a tie of its own: the question numbers equal to one are held."""
    prose = ANNOTATION.sub(" ", solution)
    found: set[Fraction] = set()
    for letter in set(UNKNOWN.findall(prose)):
        term = re.compile(rf"(?:(?<![\w.])(\d+(?:\.\d+)?|\(\d+/\d+\))[ \t]*\*?[ \t]*\(?|(?<![\w'.]))(?<![A-Za-z'])"
                          rf"{letter}(?![\w'])(?:[ \t]*/[ \t]*(\d+))?")
        for side in (side for line in prose.splitlines() for side in line.split("=")):
            coefs = [F(m.group(1).strip("()")) if m.group(1) else F(1) for m in term.finditer(side)]
            coefs = [c / int(m.group(2)) if m.group(2) else c for c, m in zip(coefs, term.finditer(side))]
            found |= set(coefs) | ({sum(coefs)} if len(coefs) > 1 else set())
    return [Relation("coefficient", c, (c,), "a coefficient of the unknown in the solution")
            for c in sorted(found) if c >= 2]


def settle(relations: list[Relation], movable: Collection[Fraction], free: Collection[Fraction],
           derived: Collection[Fraction]) -> tuple[dict[Fraction, Relation], set[Fraction]]:
    """Which tied numbers every draw recomputes, and which question numbers it holds.

    A certain tie's number is recomputed when it is `movable` (may take a new value), is the number of no
    other tie, is no term of one, and some term of it is drawn (`free`); else its free numbers are held,
    unless a step's follower is among them: the draw then keeps the tie or is refused (`Relation.holds`).
    A numeric tie ("outside sum", "constant sum") only holds its free numbers.
    """
    totals = Counter(r.value for r in relations)
    terms = {t for r in relations for t in r.terms}
    recomputed: dict[Fraction, Relation] = {}
    held: set[Fraction] = set()
    for r in relations:
        members = {r.value, *r.terms}
        if r.certain and members & set(derived):
            continue
        if r.certain and r.value in movable and totals[r.value] == 1 and r.value not in terms and \
                set(r.terms) & set(free):
            recomputed[r.value] = r
        else:
            held |= members & set(free)
    return recomputed, held


def relate(plan, question: str, solution: str, unused: Mapping[Fraction, object], consts: set[Fraction],
           pinned: Callable[[object], set[Fraction]]):
    """`plan` (a `twins.Plan`) with the ties among its question numbers and their bounds: which tied number
    every draw recomputes, which numbers it holds. A tied total outside the chain becomes a question number
    that changes (its occurrences in the solution's prose too), unless the prose reads it otherwise; then it
    stays and its tie is held. `unused`: the question numbers the chain does not read (their `Var`s);
    `pinned(plan)`: the numbers no draw may move."""
    plan = replace(plan, bounds={v: b for v, b in bounds(question).items() if v in plan.vars})
    facts = calendar_facts(question) & set(plan.vars)
    if facts:
        plan = replace(plan, held=plan.held | facts)
    outside = set(unused) - set(plan.vars)
    found = find_relations(question)
    found += [r for r in outside_sums(outside, set(plan.vars) | plan.fixed, plan.vars)
              if r.value not in {f.value for f in found}]  # a unit tie says more about the same number
    found += constant_sums(question, consts, set(plan.vars) | plan.fixed, plan.vars)
    found += coefficients(solution)
    found = [r for r in found if {r.value, *r.terms} & set(plan.vars)]  # a tie of numbers that never move
    if not found:
        return plan
    totals = {r.value for r in found if r.certain} & outside
    if totals:
        moved = replace(plan, vars=plan.vars | {v: unused[v] for v in totals}, fixed=plan.fixed - totals)
        try:
            sources, ties = read_uses(question, solution, plan.steps, moved.vars, moved.fixed, consts)
            plan = replace(moved, sources=sources, ties=ties)
        except Skip:
            pass
    steady = set(plan.derived) | set(plan.followers)
    free = set(plan.vars) - pinned(plan) - steady
    related, held = settle(found, free, free, steady)
    held |= (totals & set(plan.vars)) - set(related)  # moved in, not recomputed: it stays as written
    return replace(plan, relations=found, related=related, held=held | facts)


def relation_log(relations: list[Relation], related: Mapping[Fraction, Relation],
                 values: Mapping[Fraction, Fraction]) -> tuple[tuple[str, str], ...]:
    """What a draw did with each tie: ("recomputed sum", "8 = 3 + 2 + 3 customer") when it recomputed the
    tied number, "held ..." when none of its numbers moved, "kept ..." when they moved in step (a step's
    follower among them), "not kept ..." for a numeric tie whose follower moved (a coincidence, most likely)."""
    def action(r: Relation) -> str:
        if related.get(r.value) == r:
            return "recomputed"
        if all(values.get(v, v) == v for v in (r.value, *r.terms)):
            return "held"
        return "kept" if r.holds(values) else "not kept"

    return tuple((f"{action(r)} {r.kind}", r.describe()) for r in relations)
