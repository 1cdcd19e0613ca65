"""Perturbation engine: exact arithmetic, hand-picked GSM8K items re-solved independently, broken chains caught."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from tinyeval.audit.perturb import (
    PerturbConfig,
    Skip,
    perturb_item,
    perturb_rows,
    plan_item,
    question_vars,
    verify_twin,
)
from tinyeval.audit.perturb_prose import annotate_prose
from tinyeval.audit.probe_chain import (
    ChainError,
    evaluate,
    final_answer,
    format_number,
    parse_number,
    verify_chain,
)
from tinyeval.audit.probe_swaps import swap_entities

# (question, solution, independent solver over the question's numbers in order) - real GSM8K test items.
ITEMS = {
    "eggs": (
        ("Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
        "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
        "egg. How much in dollars does she make every day at the farmers' market?"),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at "
        "the farmer’s market.\n#### 18"),
        lambda eggs, eaten, baked, price: (eggs - eaten - baked) * price,  # "three", "four": words change too
    ),
    "percent_money": (
        ("Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 in repairs.  "
        "This increased the value of the house by 150%.  How much profit did he make?"),
        ("The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000\nHe increased "
        "the value of the house by 80,000*1.5=<<80000*1.5=120000>>120,000\nSo the new value of the house is "
        "120,000+80,000=$<<120000+80000=200000>>200,000\nSo he made a profit of 200,000-130,000=$<<200000-130000="
        "70000>>70,000\n#### 70000"),
        lambda house, repairs, pct: house * (1 + pct / 100) - house - repairs,
    ),
    "decimal_money": (
        ("Marie ordered one chicken meal that costs $12, 5 packs of milk that costs $3 each, 4 apples that cost "
        "$1.50 each, and some boxes of pizza. Marie paid a total of $50. How many boxes of pizza did Marie order "
        "if each box costs $8.50?"),
        ("Five packs of milk cost $3 x 5 = $<<3*5=15>>15.\nFour apples cost $1.50 x 4 = $<<1.5*4=6>>6.\nThe total "
        "cost of the chicken meal, milk, and apples is $12 + $15 + $6 = $<<12+15+6=33>>33.\nThus, the boxes of "
        "pizza cost $50 - $33 = $<<50-33=17>>17.\nTherefore, Marie ordered $17/$8.50 = <<17/8.5=2>>2 boxes of "
        "pizza.\n#### 2"),
        lambda meal, packs, milk, apples, apple, total, box: (total - meal - packs * milk - apples * apple) / box,
    ),
    "fraction_word": (
        ("Jim spends 2 hours watching TV and then decides to go to bed and reads for half as long.  He does this 3 "
        "times a week.  How many hours does he spend on TV and reading in 4 weeks?"),
        ("He reads for 2/2=<<2/2=1>>1 hour a night\nSo he spends 2+1=<<2+1=3>>3 hours on these activities\nThat "
        "means he spends 3*3=<<3*3=9>>9 hours a week on them\nSo in 4 weeks, he spends 9*4=<<9*4=36>>36 hours on "
        "these activities\n#### 36"),
        lambda tv, times, weeks: (tv + tv / 2) * times * weeks,
    ),
    "prose_calculation": (
        ("Siobhan has 2 fewer jewels than Aaron. Aaron has 5 more jewels than half of Raymond's jewels. If Raymond "
        "has 40 jewels, how many jewels does Siobhan have?"),
        ("Half of Raymond's jewels is 40/2 = <<40/2=20>>20\nSince Aaron has 5 more jewels than half of Raymond's "
        "jewels, he has 20+5 = <<5+20=25>>25 jewels.\nIf Siobhan has 2 fewer jewels than Aaron, he has 25-2 = 23 "
        "jewels.\n#### 23"),
        lambda fewer, more, raymond: raymond / 2 + more - fewer,
    ),
    "word_multiplier": (  # "three times": the word is the free number, rewritten as a word
        "Cody eats three times as many cookies as Amir eats. If Amir eats 5 cookies, how many cookies do both of "
        "them eat together?",
        "Cody eats 5*3 = <<5*3=15>>15 cookies.\nCody and Amir eat 15+5 = <<15+5=20>>20 cookies together.\n#### 20",
        lambda times, amir: amir * times + amir,
    ),
    "clock_time_kept": (  # "5 pm" is a time, not the "five" of the chain: only the 4/5 multipliers move
        ("Sandra had ordered four times as many red roses as white carnations. She also ordered 200 pink calla "
         "lilies, which were five times the number of white carnations. If the roses must arrive by 5 pm, how "
         "many red roses must Fred deliver by 5 pm?"),
        ("Sandra ordered 200 pink calla lilies / 5 = <<200/5=40>>40 white carnations.\nSandra therefore ordered "
         "4 * 40 = <<4*40=160>>160 red roses.\n#### 160"),
        lambda red, lilies, times, _pm, _pm_again: red * lilies / times,
    ),
    "halves_and_fifths": (  # stays whole only on multiples of 10: the divisor-sharing pool finds them
        ("Anthony had 50 pencils. He gave 1/2 of his pencils to Brandon, and he gave 3/5 of the remaining pencils "
         "to Charlie. He kept the remaining pencils. How many pencils did Anthony keep?"),
        ("Brandon received 50 x 1/2 = <<50*1/2=25>>25 pencils\nSo, there were 50 -25 = <<50-25=25>>25 pencils "
         "left.\nCharlie got 25 x 3/5 = <<25*3/5=15>>15 pencils.\nThus, Anthony gave away 25 + 15 = <<25+15=40>>40 "
         "pencils.\nTherefore, Anthony kept 50 - 40 = <<50-40=10>>10 pencils.\n#### 10"),
        lambda total, *_: total - total / 2 - total / 2 * Fraction(3, 5),
    ),
    "cents_and_tie": (  # "50 cents" enters as .50; the answer equals the hours, tied rather than pinned
        ("Billy is paid $10 per hour and gets a raise of 50 cents per hour, then a raise of $1.00 per hour. Sally "
         "is paid $10.50 per hour. If both Billy and Sally work 20 hours, how much more money will Billy earn than "
         "Sally, in dollars?"),
        ("Billy has a salary of $10+0.50+$1.00=$<<10+0.5+1=11.50>>11.50 per hour.\nIf Billy works 20 hours, he "
         "will be paid 20*$11.50=$<<20*11.5=230>>230\nIf Sally works 20 hours, she will be paid 20*$10.50="
         "$<<20*10.50=210>>210.\nThus, if both work 20 hours, Billy will be paid $230-$210=$20 more.\n#### 20"),
        lambda rate, cents, raise_, sally, hours: (rate + cents / 100 + raise_ - sally) * hours,
    ),
    "prose_juxtaposition": (  # "1/2 (68) + 10 = 44" is a step, though written without an annotation
        ("Four students scored a total of 251 points in a board game. Naomi scored 68 of the points. Yuri scored 10 "
         "more than half as many points as Naomi and Brianna scored 17 points more than Naomi. How many points did "
         "Jojo score?"),
        ("Naomi scored 68 points.\nYuri scored 1/2 (68) + 10 = 44 points\nBrianna scored 68 + 17 = <<68+17=85>>85 "
         "points\nNaomi, Yuri + Brianna scored = 68 + 44 + 85 = <<68+44+85=197>>197 points\nJojo scored the rest "
         "251 - 197 = <<251-197=54>>54 points\nJojo scored 54 points.\n#### 54"),
        lambda _four, total, naomi, more, brianna: total - naomi - (naomi / 2 + more) - (naomi + brianna),
    ),
    "prose_word_operators": (  # "200 minus 174 equals 26": the answer is a prose step; "3 pm" stays
        ("Keegan was running a car wash with his friend Tashay to raise money for a baseball camp. They needed to "
         "raise $200 for the two of them. By 3 pm, Keegan had earned $83 and Tasha had earned $91. How much more did "
         "they need to earn to reach their goal?"),
        ("They have raised $174 because 83 plus 91 equals <<83+91=174>>174.\nThey need to raise $26 more because "
         "200 minus 174 equals 26.\n#### 26"),
        lambda goal, _two, _pm, keegan, tasha: goal - keegan - tasha,
    ),
    "percent_of_percent": (  # "20% * 40% = 8%": both sides read as /100
        ("Colorado City uses 40% of the water from the Colorado River. If 80% of that water is used for industrial "
         "purposes, what percent of the river's total water is used by the city for non-industrial purposes?"),
        ("First find the percentage of water used for non-industrial purposes: 100% - 80% = 20%\nThen multiply that "
         "percentage by the percentage of water taken from the river: 20% * 40% = 8%\n#### 8"),
        lambda city, industrial: (100 - industrial) * city / 100,
    ),
    "derived_multiplier": (  # "4 * 4": the chain reads both 4s as 12/3, so "four times" follows that step
        ("Charlie has three times as many Facebook friends as Dorothy. James has four times as many friends on "
         "Facebook as Dorothy. If Charlie has 12 friends on Facebook, how many Facebook friends does James have?"),
        ("Dorothy has 12 / 3 = <<12/3=4>>4 Facebook friends.\nJames has 4 * 4 = <<4*4=16>>16 Facebook friends.\n"
         "#### 16"),
        lambda charlie, james, friends: friends / charlie * james,
    ),
    "answer_in_cents": (  # the chain ends in dollars ($0.50), the answer is asked in cents (#### 50)
        ("Archie buys beef jerky that comes 30 sticks to a bag and costs $18.00 per bag.  If Archie buys 1 bag while "
         "they're $3.00 off a bag, how much will each stick of jerky cost in cents?"),
        ("The bags are $18.00 with a $3.00 coupon so each bag is 18-3 = $<<18-3=15.00>>15.00\nThe bag has 30 sticks "
         "of jerky and costs $15.00 so each stick will cost 15/30 = $0.50\n#### 50"),
        lambda sticks, price, _bag, off: (price - off) / sticks * 100,
    ),
}

# Items a shortcut once misread: every twin they give must be right (none at all is fine).
RISKY = {
    "steps_with_one_result": (  # 2 + 8 + 2: two different steps give 2; recency read both as the latest
        ("Crista's plants need to be watered every day. She has 20 plants. 4 of her plants need half of a cup of "
         "water. 8 plants need 1 cup of water. The rest need a quarter of a cup of water. How many cups of water "
         "does Crista need every day for her plants?"),
        ("She will need 2 cups for the plants that need half of a cup of water because .5*4 = 2 cups\nShe will "
         "need 8 cups for the plants that need a cup of water because 1*8= <<1*8=8>>8 cups.\nSince she has 20 "
         "plants, 20-4-8=<<20-4-8=8>>8 plants that need a quarter of a cup of water.\nSince 8 plants need a "
         "quarter of a cup of water, she will need 2 cups of water for these plants because .25*8=<<.25*8=2>>2 "
         "cups.\nIn total, she will need 2+8+2=<<2+8+2=12>>12 cups of water per day.\n#### 12"),
        lambda total, half, one, _cup: half / 2 + one + (total - half - one) / 4,
    ),
    "tripled_is_a_constant": (  # "5*3" after "tripled": the 3 may be the "3 slices" or the tripling
        ("Mara added 3 slices of cake to a plate that already had 2 slices on it. She was getting hungrier so she "
         "tripled the number of slices she currently has. She ate 2 slices and while she was distracted, her "
         "friend stole 5 slices off her plate. What number of cake slices remained on the plate?"),
        ("Mara had 3+2=<<3+2=5>>5 slices of cake.\nShe was hungry and tripled the amount to 5*3=<<5*3=15>>15 "
         "slices.\nShe ate a couple, leaving 15-2=<<15-2=13>>13 slices.\nHer friend came and stole some which "
         "left Mara to 13-5=<<13-5=8>>8 slices.\n#### 8"),
        lambda added, had, ate, stole: (added + had) * 3 - ate - stole,
    ),
    "two_thirds_is_a_fraction": (  # "Two thirds" is 2/3: a twin with "Four thirds" of the unicorns reads wrongly
        ("There are 27 unicorns left in the world.  One third of them are in the Scottish Highlands.  Two thirds of "
         "the Scottish unicorns are female.  How many female Scottish unicorns are there?"),
        "Scottish Unicorns:27(1/3)=9\nFemale:9(2/3)=6 unicorns\n#### 6",
        lambda total, two: total / 3 * two / 3,
    ),
}


WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}


def numbers(text: str) -> list[Fraction]:
    """The question's numbers in order, digits and the words two..twelve ("one" is grammar, never a number)."""
    found = re.findall(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w-])[A-Za-z]+(?![\w-])", text)
    return [parse_number(t) if t[0].isdigit() else Fraction(WORDS[t.lower()]) for t in found
            if t[0].isdigit() or WORDS.get(t.lower(), 0) > 1]


def test_evaluate_is_exact_and_refuses_code():
    assert evaluate("80000*1.5") == 120000
    assert evaluate("0.1+0.2") == Fraction(3, 10)  # exact, not 0.30000000000000004
    assert evaluate("2*3", [Fraction(5), Fraction(7)]) == 35
    for bad in ("__import__('os')", "a+1", "2**100000", "1/0", "[1]"):
        with pytest.raises(ChainError):
            evaluate(bad)


def test_format_number_keeps_the_written_style():
    assert format_number(Fraction(1500), like="1,200") == "1,500"
    assert format_number(Fraction(15, 4), like="2.50") == "3.75"
    assert format_number(Fraction(3), like="2.50") == "3.00"
    assert format_number(Fraction(1, 4), like=".5") == ".25"
    with pytest.raises(ChainError):
        format_number(Fraction(1, 3))


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_hand_picked_items_reproduce_correct_answers(name):
    question, solution, solve = ITEMS[name]
    assert solve(*numbers(question)) == final_answer(solution)  # the solver itself is right on the original
    made = 0
    for seed in range(12):
        try:
            twin = perturb_item(question, solution, PerturbConfig(seed=seed))
        except Skip:
            continue
        made += 1
        verify_chain(twin.answer)
        assert twin.question != question
        assert final_answer(twin.answer) == solve(*numbers(twin.question)) != final_answer(solution)
    assert made >= 6, f"{name}: only {made} of 12 seeds gave a twin"


@pytest.mark.parametrize("name", sorted(RISKY))
def test_misreadings_give_no_wrong_twin(name):
    question, solution, solve = RISKY[name]
    assert solve(*numbers(question)) == final_answer(solution)
    for seed in range(12):
        try:
            twin = perturb_item(question, solution, PerturbConfig(seed=seed))
        except Skip:
            continue
        assert final_answer(twin.answer) == solve(*numbers(twin.question)), twin.question


def test_unknown_solved_mentally_is_skipped():
    question = ("Eight more than four times the number of coffee mugs in the teacher’s lounge is 40. How many "
                "coffee mugs are in the teacher’s lounge?")  # m = 8 equals the question's "Eight" by chance
    solution = "Let m be the number of mugs\n8+4*m=40\n4*m=40-8=32\n4m=<<32=32>>32\nm=<<8=8>>8\n#### 8"
    with pytest.raises(Skip, match="unknown solved mentally"):
        perturb_item(question, solution, PerturbConfig())


def test_reexecution_catches_a_broken_chain():
    question, solution, _ = ITEMS["eggs"]
    twin = perturb_item(question, solution, PerturbConfig(seed=3))
    m = re.search(r"<<([^=]*)=(\d+)>>", twin.answer)
    broken = twin.answer.replace(m.group(0), f"<<{m.group(1)}={int(m.group(2)) + 1}>>", 1)
    with pytest.raises(ChainError, match="step 1"):
        verify_chain(broken)
    plan = plan_item(question, solution)
    values = {v: parse_number(twin.changes.get(format_number(v), format_number(v))) for v in plan.vars}
    verify_twin(plan, twin.question, twin.answer, values, [s.result for s in verify_chain(twin.answer)])
    wrong_final = re.sub(r"#### (\d+)", lambda f: f"#### {int(f.group(1)) + 1}", twin.answer)
    with pytest.raises(ChainError):
        verify_twin(plan, twin.question, wrong_final, values, [s.result for s in verify_chain(twin.answer)])


def test_clock_times_and_named_counts_stay():
    question, solution, _ = ITEMS["clock_time_kept"]
    for seed in range(6):
        assert perturb_item(question, solution, PerturbConfig(seed=seed)).question.count("by 5 pm") == 2
    question, solution, _ = ITEMS["word_multiplier"]
    twins = [perturb_item(question, solution, PerturbConfig(seed=seed)) for seed in range(6)]
    assert any("three times" not in t.question for t in twins)  # the word itself is resampled...
    assert all(re.match(r"Cody eats [a-z]+ times as many", t.question) for t in twins)  # ...and stays a word
    free, fixed = question_vars("Jan has three times the pets of Cindy, who has 4. How many do the three have?")
    assert 3 in fixed and 3 not in free and 4 in free  # "the three" counts people: the multiplier stays too
    free, fixed = question_vars("There are 27 unicorns. Two thirds of them are female.")
    assert 2 in fixed and 2 not in free and 27 in free  # "Two thirds" is 2/3, never "Four thirds"


def test_money_twin_keeps_cents_and_reads_as_money():
    question, solution, solve = ITEMS["cents_and_tie"]
    twin = perturb_item(question, solution, PerturbConfig(seed=0))
    assert re.search(r"raise of \d+ cents", twin.question)  # the cents stay cents, the chain reads them as .xx
    assert final_answer(twin.answer) == solve(*numbers(twin.question))
    assert all(len(m) == 2 for m in re.findall(r"\$\d+\.(\d+)", twin.question))  # $1.00 stays $x.xx


def test_unsafe_items_are_skipped_with_a_reason():
    unannotated = ("Tom has 3 apples and buys 4 more. How many apples does he have?", "He has seven.\n#### 7")
    with pytest.raises(Skip, match="no calculator annotations"):
        perturb_item(*unannotated, PerturbConfig())
    mental_math = ("He works 8 hours a day for 5 days. At $10 an hour, what does he earn?",
                   "He earns 40*10=<<40*10=400>>400 dollars.\n#### 400")  # 40 = 8*5 was never written down
    with pytest.raises(Skip, match="unexplained constant"):
        perturb_item(*mental_math, PerturbConfig())


def test_annotate_prose_adds_only_calculations_that_hold():
    text = "so 99 + 5 = $104. Also 8 x 20 = 160, 2+2=5, 10*2 = $<<10*2=20>>20 and 12/20 x 100% = 60%"
    out = annotate_prose(text)
    assert "$<<99+5=104>>104" in out and "<<8*20=160>>160" in out
    assert "2+2=5" in out and "<<2+2" not in out and out.count("<<10*2=20>>") == 1
    # an annotation that only repeats a prose equation's result takes that equation; a wrong one stays
    out = annotate_prose("65+94+81 = <<240=240>>240 tests, 60+30=<<90=90>>90 mph, 2+2=<<5=5>>5, x=<<4=4>>4")
    assert "65+94+81 = <<65+94+81=240>>240" in out and "<<60+30=90>>90" in out
    assert "2+2=<<5=5>>5" in out and "x=<<4=4>>4" in out
    # mental maths in its usual forms: juxtaposition, unit words, word operators, % results, no-break spaces
    for prose, annotated in [
        ("Ruins:220(.40)=88", "Ruins:220(.40)=<<220*(.40)=88>>88"),
        ("$600/month * 12 months/year = $7200 in a year", "$<<600*12=7200>>7200 in a year"),
        ("because 83 plus 91 equals 174.", "equals <<83+91=174>>174."),
        ("7 puppies / 20 puppies * 100% = 35%", "= <<7/20*100=35>>35%"),
        ("20% * 40% = 8%", "= <<(20/100*40/100)*100=8>>8%"),
        ("$864\xa0+ $2,592 = $3,456.", "= $<<864+2592=3456>>3,456."),
        ("15 widgets/hour * 24 hours/day = <<360=360>>360 widgets", "= <<15*24=360>>360 widgets"),
    ]:
        assert annotated in annotate_prose(prose), prose
    # ...but never a mixed number, a result that goes on, or a calculation that does not hold
    for prose in ("4 1/2 + 1/2 = 5", "3 1/2 - 2 = 1 1/2", "2x + 180 – x = 304"):
        assert "<<" not in annotate_prose(prose), prose
    assert annotate_prose("4 * 60 / 5 = 4 * 12 = 48") == "4 * 60 / 5 = 4 * 12 = <<4*12=48>>48"


def test_swaps_keep_numbers_and_are_consistent():
    question, solution, _ = ITEMS["eggs"]
    q, s, swaps = swap_entities(question, solution, random.Random(0), names=True, objects=True)
    assert "Janet" in swaps and swaps["Janet"] in q and swaps["Janet"] in s and "Janet" not in q + s
    assert numbers(q) == numbers(question) and final_answer(s) == 18


def test_gsm8k_test_coverage_and_every_twin_verifies(data_root):
    from tinyeval.data import load

    rows = load("gsm8k", "test").rows
    twins, cov = perturb_rows(rows, PerturbConfig(seed=0))
    assert cov.total == 1319 and cov.perturbed == len(twins) == cov.total - sum(cov.skipped.values())
    assert cov.rate >= 0.84  # measured 0.847 (the 85% target is not reached; see README)
    for twin in twins:
        verify_chain(twin.answer)
        assert final_answer(twin.answer) != final_answer(rows[twin.index]["answer"])
    again, _ = perturb_rows(rows[:50], PerturbConfig(seed=0))
    assert [t.question for t in again] == [t.question for t in twins if t.index < 50]  # seeded: reproducible


def test_perturb_benchmark_writes_gsm8k_format(tmp_path, data_root):
    from tinyeval.audit.perturb import perturb_benchmark
    from tinyeval.data import read_jsonl
    from tinyeval.errors import TinyevalError

    out = tmp_path / "twins.jsonl"
    cov = perturb_benchmark("gsm8k", PerturbConfig(seed=2), n=25, out=str(out))
    rows = read_jsonl(out)
    assert len(rows) == 25 and cov.total == 1319 and all(set(r) == {"question", "answer"} for r in rows)
    for row in rows:
        verify_chain(row["answer"])
        assert final_answer(row["answer"]) is not None
    with pytest.raises(TinyevalError, match="0 of 500"):
        perturb_benchmark("math500", PerturbConfig())
    assert not (tmp_path / "math.jsonl").exists()
