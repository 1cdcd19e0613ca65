"""Verified number perturbation of GSM8K: the same problem with new numbers and a recomputed answer.

A memorised item is recalled by its surface; a model that reasons solves its twin with new numbers just as
well. The engine reads each solution's `<<expr=value>>` annotations as a program over the question's numbers:

  1. link every number inside an annotation to where it comes from: a number of the question (`var`), a
     percentage of one (`pct`: 150% read as 1.5, 20% off as 0.8), an earlier step's result (`step`), or a
     unit constant (`const`: 60 minutes, 12 months, 100 percent, "twice" as 2);
  2. resample the question numbers within a plausible range (same decimal places and roundness, the order
     of all of them kept when any draw allows it (99.5% of twins), else where two meet in one step,
     percentages at most 100), re-run every step with exact fractions, and keep the draw only if every
     result keeps its sign and stays whole (or money-like) where the original did;
  3. rewrite question and solution (annotations from the links, prose numbers by value) and verify the new
     text by re-executing its chain and re-deriving every link from the rewritten question.

Numbers the question ties together without the chain computing the tie (a total stated beside its parts, one
quantity in two units) keep the tie in every draw: the tied number is recomputed, or the numbers are held
(`perturb.relations`; the twin lists what it did in `Twin.relations`).

An item is skipped, with its reason counted, whenever any link is ambiguous or unexplained: a number in the
prose that no step produces, a constant the question does not justify, a chain that does not re-execute.
Skipping is the safe failure; a twin with a wrong answer would poison the probe.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TypedDict

from tinyeval.audit.perturb.chain import (
    NUMBER,
    ChainError,
    Step,
    decimals,
    evaluate,
    final_answer,
    format_number,
    read_number,
    verify_chain,
    with_article,
    write_number,
)
from tinyeval.audit.perturb.link import (
    PCT_FORMS,
    Ref,
    Skip,
    Var,
    available,
    derivable,
    link,
    number_tokens,
    prose_echoes,
    prose_numbers,
    question_vars,
    read_uses,
    solved_mentally,
    tied_step,
)
from tinyeval.audit.perturb.prose import annotate_prose
from tinyeval.audit.perturb.relations import Relation, relate, relation_log
from tinyeval.errors import TinyevalError

F = Fraction
ROUND_GRAINS = (1000, 500, 100, 50, 25, 10, 5)
ORDERED_TRIES = 200  # draws that keep the order of every pair of question numbers before only compared pairs


@dataclass(frozen=True)
class PerturbConfig:
    """How far and how often to resample.

    seed: RNG seed; one (seed, item) pair always gives the same twin.
    tries: resampling attempts per item before it is skipped as "no valid draw". Most items find a draw
        within 400; 2,000 also finds the rare ones (a chain that stays whole on few values, 10 items).
    spread: new values lie within [v * (1 - spread), v * (1 + spread)] (small numbers get a few more).
    new_answer: require the twin's answer to differ from the original's (a twin with the same answer
        cannot tell recall from reasoning).
    names: also swap person names (gender kept) in question and solution.
    objects: also swap a few interchangeable objects (apples <-> oranges).
    """

    seed: int = 0
    tries: int = 2000
    spread: float = 0.5
    new_answer: bool = True
    names: bool = False
    objects: bool = False

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise TinyevalError(f"tries must be >= 1, got {self.tries}")
        if not 0 < self.spread < 1:
            raise TinyevalError(f"spread must be in (0, 1), got {self.spread}")


@dataclass
class Plan:
    """A solution read as a program: steps, the source of each of their numbers, and the answer's source."""

    steps: list[Step]
    links: list[list[Ref]]
    answer: Ref
    vars: dict[Fraction, Var]
    fixed: set[Fraction]  # question numbers that must not change (ordinals, times, years, fractions, 0, 1)
    ties: list[frozenset[tuple]]  # sources of one value used where either may be meant: every draw keeps
    # them equal (a tie holding a constant or fixed number pins the others to it)
    sources: dict[Fraction, set[tuple]]  # value -> every ("var"|"pct"|"step"|"fixed", key[, form]) giving it
    derived: dict[Fraction, int] = field(default_factory=dict)  # question number -> the step it must equal
    held: set[Fraction] = field(default_factory=set)  # question numbers kept because of a tie among question
    # numbers that cannot be recomputed (see `perturb.relations`)
    followers: dict[Fraction, int] = field(default_factory=dict)  # chain numbers tied only to one step: they
    # may follow it when no free draw keeps the tie (see `perturb_item`)
    relations: list[Relation] = field(default_factory=list)  # ties among question numbers every draw keeps
    related: dict[Fraction, Relation] = field(default_factory=dict)  # question number -> the tie it is
    # recomputed from in every draw
    bounds: dict[Fraction, Fraction] = field(default_factory=dict)  # question number -> the most it may become
    # ("five days a week": 7; see `perturb.relations.bounds`)


@dataclass(frozen=True)
class Twin:
    """A perturbed item in GSM8K's own format, plus what changed."""

    index: int
    question: str
    answer: str
    original_answer: str
    new_answer: str
    changes: dict[str, str]  # old number -> new number, names and objects too
    relations: tuple[tuple[str, str], ...] = ()  # ("recomputed sum", "8 = 3 + 2 + 3 customer"): each tie
    # among the question's numbers and what the draw did to keep it ("held ..." numbers kept)


class CoverageJSON(TypedDict):
    """`Coverage.as_dict()`: how many items got a verified twin, and why the others were skipped."""

    total: int
    perturbed: int
    coverage: float  # perturbed / total
    skipped: dict[str, int]  # reason -> items, most common first
    relations: dict[str, int]  # "recomputed sum", "held outside sum", ... -> twins that kept such a tie


class PerturbSummary(CoverageJSON):
    """`tinyeval perturb --json`: the coverage, plus how many twins were written where."""

    written: int
    out: str | None


@dataclass
class Coverage:
    total: int = 0
    perturbed: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> items
    relations: Counter = field(default_factory=Counter)  # "recomputed sum", ... -> twins (see Twin.relations)

    @property
    def rate(self) -> float:
        return self.perturbed / self.total if self.total else 0.0

    def as_dict(self) -> CoverageJSON:
        return {"total": self.total, "perturbed": self.perturbed, "coverage": round(self.rate, 4),
                "skipped": dict(self.skipped.most_common()), "relations": dict(self.relations.most_common())}

    def summary(self, n: int | None, out: str | None) -> PerturbSummary:
        """What `perturb_benchmark(..., n, out)` wrote, for the terminal and `--json`."""
        return {**self.as_dict(), "written": min(n or self.perturbed, self.perturbed) if out else 0, "out": out}



# ---- 1. linking (the rules: perturb_link) ------------------------------------------------------------------

def plan_item(question: str, solution: str) -> Plan:
    """Read one item's chain and link every number; raises Skip with the reason when that is not safe.

    A value used where it has two possible sources (40% of a file and 40 minutes; "2 bolts" and "half" as
    /2) ties its sources: every draw must give them one value (a constant or fixed number among them
    pins the rest), so either reading gives the same chain and the same prose.
    """
    try:
        steps = verify_chain(solution)
        answer = final_answer(solution)
    except ChainError as e:
        raise Skip("original chain does not re-execute" if "evaluates" in str(e) else "unreadable chain") from e
    if not steps:
        raise Skip("no calculator annotations")
    if any(solved_mentally(solution, steps, i) for i in range(len(steps))):
        raise Skip("unknown solved mentally")
    plan_vars, fixed = question_vars(question)
    results = [s.result for s in steps]
    links = [[link(leaf.value, i, results, plan_vars, fixed, question) for leaf in step.leaves]
             for i, step in enumerate(steps)]
    if answer in results:
        answer_ref = Ref("step", max(j for j, r in enumerate(results) if r == answer))
    elif answer in plan_vars:  # by chance: "25 - 20 = 5" in unannotated prose, "5 cars" in the question
        raise Skip("final answer equals a question number, not a step result")
    elif re.search(r"\bin cents\b", question, re.IGNORECASE) and answer / 100 in results:
        answer_ref = Ref("step", max(j for j, r in enumerate(results) if r == answer / 100), "cents")
    else:
        raise Skip("final answer is not a step result")
    used = {r.key for row in links for r in row if r.kind in ("var", "pct")}
    unused = {v: var for v, var in plan_vars.items() if v not in used}
    plan_vars = {v: var for v, var in plan_vars.items() if v in used}
    consts = {r.key for row in links for r in row if r.kind == "const"}
    plan_vars |= derivable(question, solution, steps, plan_vars, fixed, unused, consts)
    fixed |= set(unused) - set(plan_vars)  # question numbers outside the chain stay as they are
    sources, ties = read_uses(question, solution, steps, plan_vars, fixed, consts)
    derived = {v: j for v in unused if v in plan_vars and (j := tied_step(ties, v)) is not None}
    followers = {v: j for v in plan_vars if v not in derived and (j := tied_step(ties, v)) is not None}
    plan = relate(Plan(steps, links, answer_ref, plan_vars, fixed, ties, sources, derived, set(), followers),
                  question, solution, unused, consts, _pinned)
    if not set(plan.vars) - _pinned(plan) - set(derived) - set(plan.related):
        if set(plan.vars) - _pinned(replace(plan, held=set())) - set(derived):
            raise Skip("tied question numbers held, none left free")
        raise Skip("no free question number enters the chain")
    return plan


# ---- 2. resampling ----------------------------------------------------------------------------------------

def _unit(var: Var) -> Fraction:
    """The last written decimal place of a number ($2.50 -> 0.01): new values keep it."""
    places = max(decimals(var.value) or 0, *(len(t.split(".")[1]) if "." in t else 0 for t in var.texts))
    return F(1, 10**places)


def _steps(var: Var, spread: float, grain: int | None = None) -> range:
    """New values of `var` in units of its last decimal place, every `grain` units; the default grain
    keeps its roundness (50 -> 30, 40, 60, 70). Percentages stay at most 100."""
    unit = _unit(var)
    whole = int(var.value / unit)
    if grain is None:
        grain = next((g for g in ROUND_GRAINS if whole % g == 0 and whole // g >= 2), 1)
    lo = max(grain, int(whole * (1 - spread)) // grain * grain)
    hi = -(-int(whole * (1 + spread)) // grain) * grain
    if whole < 20 and unit == 1:
        lo, hi = max(2, lo), max(hi, whole + 3)  # small counts: 3 -> 2..6, never 0 or 1 (grammar)
        lo = -(-lo // grain) * grain
    if var.percent and var.value <= 100:
        hi = min(hi, int(100 / unit) // grain * grain)
    return range(lo, hi + 1, grain)


def candidates(var: Var, spread: float) -> list[Fraction]:
    """Plausible new values: same decimal places and roundness (50 -> 30, 40, 60, 70), percentages <= 100."""
    return [_unit(var) * k for k in _steps(var, spread)]


def _divisible(var: Var, spread: float) -> list[range]:
    """For each divisor d of a number (in units of its last decimal place), its multiples in the same range
    (50 -> 30, 40, 60, 70 for d = 10; 15 -> 9, 12, 18, 21 for d = 3). A chain that halves 50 and takes 3/5
    of the rest stays whole only on such values; the round ones (25, 75) never do. d keeps all but one of
    the trailing zeros (400 -> multiples of 10 at least), so $400 never becomes $208."""
    whole = int(var.value / _unit(var))
    zeros = len(str(whole)) - len(str(whole).rstrip("0"))
    step = 10 ** max(zeros - 1, 0)
    out = [_steps(var, spread, d) for d in range(step, min(whole, 10**6) + 1, step) if d > 1 and whole % d == 0]
    return [r for r in out if len(r) > 1]


def _nice(new: Fraction, old: Fraction) -> bool:
    """A new step result is acceptable if it keeps the sign and the wholeness (or cents) of the old one."""
    if (new > 0) != (old > 0) or (new < 0) != (old < 0):
        return False
    if old.denominator == 1:
        return new.denominator == 1
    places = decimals(new)
    return places is not None and places <= max(decimals(old) or 0, 2)


def recompute(plan: Plan, values: dict[Fraction, Fraction]) -> list[Fraction]:
    """Every step's result with question numbers replaced by `values` (old -> new)."""
    results: list[Fraction] = []
    for step, refs in zip(plan.steps, plan.links):
        results.append(evaluate(step.expr, [resolve(r, values, results) for r in refs]))
    return results


def resolve(ref: Ref, values: dict[Fraction, Fraction], results: Sequence[Fraction]) -> Fraction:
    return {"var": lambda: values[ref.key], "pct": lambda: PCT_FORMS[ref.form](values[ref.key]),
            "step": lambda: results[ref.key] * (100 if ref.form == "cents" else 1), "const": lambda: ref.key}[ref.kind]()


def _compared(plan: Plan) -> list[tuple[Fraction, Fraction]]:
    """Pairs of question numbers that meet in one step (`8 - 2`, `40 / 20`), smaller first: their order is
    what "2 hours less" or "a part of the whole" rests on, so a draw must keep it."""
    pairs = set()
    for refs in plan.links:
        keys = sorted({r.key for r in refs if r.kind in ("var", "pct")})
        pairs |= {(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]}
    return sorted(pairs)


def _pools(plan: Plan, free: list[Fraction], spread: float) -> dict[Fraction, list[list[Fraction] | range]]:
    """Per number: its round values and its divisor-sharing ones (see `_divisible`), in units of `_unit`."""
    pools = {}
    for v in free:
        var = plan.vars[v]
        pools[v] = [_steps(var, spread), *_divisible(var, spread)]
        if any(t[0].isalpha() for t in var.texts):  # "four times" -> "six times": a number with a word
            pools[v] = [kept for pool in pools[v] if len(kept := [k for k in pool if 2 <= k < 100]) > 1]
    return pools


def _plausible(var: Var, value: Fraction) -> bool:
    """A value a question number may take when derived from a step: positive, a word only 2..99, a
    percentage at most 100."""
    if any(t[0].isalpha() for t in var.texts) and not (value.denominator == 1 and 2 <= value < 100):
        return False
    return value > 0 and not (var.percent and value > 100)


def _pinned(plan: Plan) -> set[Fraction]:
    """Question numbers tied to a constant or a fixed number, or held: no draw may move them."""
    return plan.held | {s[1] for tie in plan.ties if any(s[0] == "fixed" for s in tie) for s in tie
                        if s[0] in ("var", "pct")}


def _follow(plan: Plan, values: dict[Fraction, Fraction]) -> dict[Fraction, Fraction]:
    """`values` with every derived question number set to its step's new result. A derived number the chain
    also reads ("$20 shoes" in step 1, tied to 4 * 5 = 20 in step 3) feeds steps before its own: re-run
    until no value moves, or raise ChainError when it never settles (a step that feeds itself)."""
    for _ in range(len(plan.derived) + 1):
        results = recompute(plan, values)
        new = values | {v: results[j] for v, j in plan.derived.items()}
        if new == values:
            return values
        values = new
    raise ChainError("derived question numbers do not settle")


def _draw(plan: Plan, config: PerturbConfig, rng: random.Random) -> tuple[dict, list[Fraction]]:
    olds = sorted(plan.vars)
    pools = _pools(plan, [v for v in olds if v not in _pinned(plan) | set(plan.derived) | set(plan.related)],
                   config.spread)
    free = [v for v, pool in pools.items() if pool]
    if not free:
        raise Skip("no free question number enters the chain")
    compared = _compared(plan)
    old_answer = resolve(plan.answer, {v: v for v in olds}, [s.result for s in plan.steps])
    taken = plan.fixed | {r.key for row in plan.links for r in row if r.kind == "const"}
    every_pair = list(zip(olds, olds[1:]))
    for attempt in range(config.tries):
        moved = rng.sample(free, rng.randint(1, len(free)))  # a few numbers at a time: more draws divide
        values = {v: _unit(plan.vars[v]) * rng.choice(rng.choice(pools[v])) if v in moved else v
                  for v in olds}
        if plan.related:  # tied question numbers follow their terms (a total its parts)
            values |= {u: r.of(values) for u, r in plan.related.items()}
            if not all(_nice(values[u], u) and _plausible(plan.vars[u], values[u]) for u in plan.related):
                continue
        if plan.derived:
            try:
                values = _follow(plan, values)
            except ChainError:
                continue
            if not all(_plausible(plan.vars[v], values[v]) for v in plan.derived):
                continue
        news = set(values.values())
        # the first 200 tries keep the order of all question numbers (small < medium < large shirts);
        # the rest only where two numbers meet in one step
        ordered = every_pair if attempt < min(ORDERED_TRIES, config.tries // 2) else compared
        if len(news) < len(olds) or taken & (news - set(olds)) or any(values[a] >= values[b] for a, b in ordered) \
                or not all(r.holds(values) for r in plan.relations if r.enforced) \
                or any(values[v] > b for v, b in plan.bounds.items()):
            continue  # distinct, no collision with a fixed number, order kept, every tie and bound kept
        try:
            results = recompute(plan, values)
        except ChainError:
            continue
        if not all(_nice(new, s.result) for new, s in zip(results, plan.steps)) or \
                any(len({_source_value(s, values, results) for s in tie}) > 1 for tie in plan.ties):
            continue
        answer = resolve(plan.answer, values, results)
        if config.new_answer and answer == old_answer:
            continue
        return values, results
    raise Skip("no valid draw")


# ---- 3. rewriting and verification -------------------------------------------------------------------------

def _source_value(src: tuple, values: dict, results: Sequence[Fraction]) -> Fraction:
    kind, key = src[0], src[1]
    return {"var": lambda: values[key], "pct": lambda: PCT_FORMS[src[2]](values[key]),
            "step": lambda: results[key], "fixed": lambda: key}[kind]()


def _rewrite_prose(plan: Plan, solution: str, values: dict, results: list[Fraction]) -> dict[int, tuple[str, int]]:
    """New text and old end for every prose number, by start offset: by source for numbers read by value,
    the step's new result for echoes, the new answer for `#### N`."""
    out: dict[int, tuple[str, int]] = {}
    echoes = prose_echoes(solution, plan.steps)
    for m, k in prose_numbers(solution, plan.steps, set(plan.vars)):
        if m.start() in echoes:  # a restated leaf: its step's new leaf, by position
            i, leaf = echoes[m.start()]
            out[m.start()] = format_number(resolve(plan.links[i][leaf], values, results), like=m.group()), m.end()
            continue
        found = available(plan.sources, read_number(m.group()), k, prose=True)
        news = {_source_value(s, values, results) for s in found}
        if len(news) != 1:
            raise Skip("ambiguous number in solution prose")
        out[m.start()] = write_number(news.pop(), like=m.group()), m.end()
    for i, step in enumerate(plan.steps):
        echo = NUMBER.match(solution, step.end)
        if echo:
            out[echo.start()] = format_number(results[i], like=echo.group()), echo.end()
    final = re.search(r"####\s*(\S+)\s*$", solution)
    if final:
        answer = resolve(plan.answer, values, results)
        out[final.start(1)] = format_number(answer, like=final.group(1)), final.end(1)
    return out


def rewrite(plan: Plan, question: str, solution: str, values: dict, results: list[Fraction]) -> tuple[str, str]:
    """The twin's question and solution: annotations rebuilt from links, prose numbers from their sources."""
    new_q, cut = [], 0
    for m, value, label in number_tokens(question):
        if value in plan.vars and not label:
            new = write_number(values[value], like=m.group())
            new_q += [with_article(question[cut:m.start()], new), new]
            cut = m.end()
    new_q.append(question[cut:])
    prose = _rewrite_prose(plan, solution, values, results)
    step_at = {step.start: i for i, step in enumerate(plan.steps)}
    parts, pos = [], 0
    while pos < len(solution):
        if pos in step_at:
            i = step_at[pos]
            step, expr, cut = plan.steps[i], [], 0
            for leaf, ref in zip(step.leaves, plan.links[i]):
                expr += [step.expr[cut:leaf.start], format_number(resolve(ref, values, results), like=leaf.text)]
                cut = leaf.end
            expr.append(step.expr[cut:])
            parts.append(f"<<{''.join(expr)}={format_number(results[i], like=step.result_text)}>>")
            pos = step.end
        elif pos in prose:
            text, pos = prose[pos]
            parts.append(text)
        else:
            parts.append(solution[pos])
            pos += 1
    return "".join(new_q), "".join(parts)


def verify_twin(plan: Plan, question: str, solution: str, values: dict, results: list[Fraction]) -> None:
    """Check the rewritten text itself, not the numbers we meant to write.

    The new solution's chain must re-execute; its `#### N` must be the recomputed answer; every var-linked
    number must appear in the new question; every step-linked number must equal that step's new written
    result; every recomputed tied number must appear in the new question. Raises ChainError at the first
    failure.
    """
    steps = verify_chain(solution)
    if len(steps) != len(plan.steps):
        raise ChainError(f"twin has {len(steps)} steps, original {len(plan.steps)}")
    in_question = {value for _, value, _ in number_tokens(question)}
    for i, (step, refs) in enumerate(zip(steps, plan.links)):
        for leaf, ref in zip(step.leaves, refs):
            if ref.kind in ("var", "pct") and values[ref.key] not in in_question:
                raise ChainError(f"step {i + 1}: {leaf.text} is not a number of the new question")
            if leaf.value != resolve(ref, values, [s.result for s in steps]):
                raise ChainError(f"step {i + 1}: {leaf.text} does not match its source {ref.kind}")
    if final_answer(solution) != resolve(plan.answer, values, [s.result for s in steps]):
        raise ChainError("final answer differs from the re-executed chain")
    for u, relation in plan.related.items():
        if values[u] not in in_question or not relation.holds(values):
            raise ChainError(f"tied number {format_number(u)} ({relation.describe()}) was not rewritten")


def _draw_or_follow(plan: Plan, config: PerturbConfig, rng: random.Random) -> tuple[Plan, dict, list[Fraction]]:
    """A valid draw, with the plan it was made under; raises Skip("no valid draw") when none is found."""
    try:
        return plan, *_draw(plan, config, rng)
    except Skip as none:
        if not plan.followers:
            raise
        # "$20 shoes" read by step 1 is tied to 4 * 5 = 20 of step 3: a free draw rarely hits 20 again, so
        # the shoes follow the step, the tie holds by construction and either reading gives one chain
        plan = replace(plan, derived=plan.derived | plan.followers)
        try:
            return plan, *_draw(plan, config, rng)
        except Skip:
            raise none from None


def perturb_item(question: str, solution: str, config: PerturbConfig, index: int = 0) -> Twin:
    """One verified twin of a GSM8K item; raises Skip with the reason when it cannot be made safely."""
    from tinyeval.audit.perturb.swaps import swap_entities

    rng = random.Random(f"{config.seed}:{index}")
    solution = annotate_prose(solution)
    plan = plan_item(question, solution)
    try:
        plan, values, results = _draw_or_follow(plan, config, rng)
    except Skip:
        if plan.relations:  # would a draw exist if the ties were not kept? then they cost this item
            try:
                _draw_or_follow(replace(plan, relations=[], related={}, held=set()), config,
                                random.Random(f"{config.seed}:{index}"))
            except Skip:
                raise Skip("no valid draw") from None
            raise Skip("no valid draw keeps the tied question numbers") from None
        raise
    try:
        new_q, new_a = rewrite(plan, question, solution, values, results)
    except ChainError as e:  # "fifty" in the solution for a number drawn as 100: no word to write it
        raise Skip("a new number cannot be written like the old one") from e
    try:
        verify_twin(plan, new_q, new_a, values, results)
    except ChainError as e:
        raise Skip("twin failed verification") from e
    changes = {format_number(v): format_number(values[v]) for v in sorted(plan.vars) if values[v] != v}
    new_q, new_a, swapped = swap_entities(new_q, new_a, rng, names=config.names, objects=config.objects)
    return Twin(index, new_q, new_a, format_number(final_answer(solution)), format_number(final_answer(new_a)),
                {**changes, **swapped}, relation_log(plan.relations, plan.related, values))


def perturb_rows(rows: Sequence[dict], config: PerturbConfig) -> tuple[list[Twin], Coverage]:
    """Twins of every row that can be perturbed safely, and the coverage with skip reasons."""
    twins, cov = [], Coverage(total=len(rows))
    for i, row in enumerate(rows):
        try:
            twin = perturb_item(row["question"], row["answer"], config, i)
        except Skip as e:
            cov.skipped[str(e)] += 1
            continue
        twins.append(twin)
        cov.relations.update({action for action, _ in twin.relations})
    cov.perturbed = len(twins)
    return twins, cov


def perturb_benchmark(benchmark: str, config: PerturbConfig, n: int | None = None, out: str | None = None,
                      split: str = "test", data_root: str | None = None) -> Coverage:
    """`tinyeval perturb`: verified twins of a benchmark split, written as JSONL in its own format.

    `n` keeps a seeded sample of n twins (in dataset order). MATH500 solutions carry no calculator chain,
    so no numeric perturbation of them can be verified (0 of 500): that is an error, not an empty file.
    """
    from tinyeval.data import load
    from tinyeval.io import write_jsonl

    if benchmark != "gsm8k":
        raise TinyevalError(f"verified perturbation exists for gsm8k only; '{benchmark}' has no calculator chain "
                            "to re-execute (MATH500: 0 of 500 items verifiable)")
    if n is not None and n < 1:
        raise TinyevalError(f"--n must be >= 1, got {n}")
    twins, cov = perturb_rows(load(benchmark, split, data_root).rows, config)
    if n is not None and n < len(twins):
        keep = set(random.Random(config.seed).sample(range(len(twins)), n))
        twins = [t for i, t in enumerate(twins) if i in keep]
    if out:
        write_jsonl(out, ({"question": t.question, "answer": t.answer} for t in twins))
    return cov
