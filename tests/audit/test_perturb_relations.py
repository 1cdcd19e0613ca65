"""Ties among a question's own numbers (perturb.relations): found by the documented rule, kept by every twin."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from test_perturb import twins  # the seeds-0..11 helper of the engine's own tests

from tinyeval.audit.perturb.chain import final_answer, parse_number
from tinyeval.audit.perturb.relations import find_relations
from tinyeval.audit.perturb.twins import PerturbConfig, Skip, perturb_item, perturb_rows

# A total period stated beside the two periods that make it up; the chain never reads the total.
TRIP = (("Sam goes on a 10-day trip. He spends 4 days in Paris and 6 days in Rome. His hotel costs $80 a night in "
         "Paris and $50 a night in Rome. How much does he spend on hotels?"),
        ("In Paris he spends 4 * 80 = $<<4*80=320>>320.\nIn Rome he spends 6 * 50 = $<<6*50=300>>300.\n"
         "In all he spends 320 + 300 = $<<320+300=620>>620.\n#### 620"))
# One number stated twice (the same rows and trees): one question number, it changes as one.
ORCHARD = (("A farmer plants 6 rows of trees with 6 trees in each row. Each tree gives 20 apples. How many apples "
            "does he pick?"),
           "He has 6 * 6 = <<6*6=36>>36 trees.\nHe picks 36 * 20 = <<36*20=720>>720 apples.\n#### 720")
# One quantity in two units: the chain reads the minutes only, so the hours hold the minutes.
MOVIE = (("The movie lasts 2 hours, that is 120 minutes. The ads before it take 15 minutes. How many minutes are "
          "Ann and Bob in the cinema?"),
         "They are there for 120 + 15 = <<120+15=135>>135 minutes.\n#### 135")
# The total is read by the chain, its parts are not and cannot move it; the other factor is a constant.
DOZENS = (("Billy has 8 customers: 3 customers in the morning and 5 customers in the afternoon. Each customer buys "
           "a dozen eggs. How many eggs does he sell?"),
          "He sells 8 * 12 = <<8*12=96>>96 eggs.\n#### 96")


def numbers(text: str) -> list[Fraction]:
    return [parse_number(t) for t in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def test_a_total_period_beside_its_parts_is_recomputed_in_every_twin():
    assert [r.describe() for r in find_relations(TRIP[0])] == ["10 = 4 + 6 day"]
    made, moved = 0, 0
    for twin in twins(*TRIP):
        made += 1
        total, paris, rome, paris_rate, rome_rate = numbers(twin.question)
        assert total == paris + rome, twin.question  # never "a 10-day trip: 5 days in Paris and 8 in Rome"
        assert final_answer(twin.answer) == paris * paris_rate + rome * rome_rate
        assert twin.relations == (("recomputed sum", "10 = 4 + 6 day"),)
        moved += total != 10
    assert made >= 6 and moved >= 3  # the days do change, the total with them


def test_a_number_stated_twice_changes_as_one():
    made, moved = 0, 0
    for twin in twins(*ORCHARD):
        made += 1
        rows, per_row, apples = numbers(twin.question)
        assert rows == per_row and final_answer(twin.answer) == rows * per_row * apples
        moved += rows != 6
    assert made >= 6 and moved >= 3


def test_one_quantity_in_two_units_is_held():
    (relation,) = find_relations(MOVIE[0])
    assert (relation.kind, relation.describe()) == ("conversion", "120 = 60 x 2 minute")
    made = 0
    for twin in twins(*MOVIE):
        made += 1
        hours, minutes, ads = numbers(twin.question)
        assert minutes == 60 * hours and final_answer(twin.answer) == minutes + ads, twin.question
        assert twin.relations == (("held conversion", "120 = 60 x 2 minute"),)
    assert made >= 6


def test_coincidences_are_not_ties():
    for question in (
        # prices add up by chance: $13 = $8 + $5 (money takes no part in sums)
        "Tyler wants a dictionary for $18, a dinosaur book for $13 and a cookbook for $8. He earns $5 per hour.",
        # different units: 90 insects are no 80 spiders + 10 legs
        "Jake sees 80 spiders with 8 legs each, 90 insects with 6 legs each and 3 bugs with 10 legs each.",
        # rates are no parts of a total: 6 hot dogs a pack, 2 hot dogs each, 4 hot dogs left over
        "Each guest will eat 2 hot dogs. He has 4 hot dogs left over. A pack contains 6 hot dogs.",
        # bottles of soda are no bottles of water: 7 != 4 + 3
        "Seven bottles of soda cost $21 while 4 bottles of water cost $8. He buys 3 bottles of soda.",
        # a product needs a total in its sentence: 3 boxes of 4 cups and 12 cups of tea
        "She fills 3 boxes with 4 cups each. Later she drinks 12 cups of tea.",
    ):
        assert find_relations(question) == [], question
    # ...while the same shapes with a shared unit, or a stated total, are ties
    assert [r.describe() for r in find_relations("Six of the packets are red and the other four packets are "
                                                 "blue; ten packets in all.")] == ["10 = 4 + 6 packet"]
    assert [r.describe() for r in find_relations("She has 3 boxes of 12 eggs, 36 eggs in total.")] == \
        ["36 = 3 x 12 egg"]
    assert [r.describe() for r in find_relations("He works 30 days, then 30 days more, 60 days in all.")] == \
        ["60 = 30 + 30 day"]


def test_tied_numbers_held_with_nothing_left_is_a_counted_skip():
    with pytest.raises(Skip, match="tied question numbers held, none left free"):
        perturb_item(*DOZENS, PerturbConfig())
    rows = [{"question": q, "answer": a} for q, a in (TRIP, ORCHARD, MOVIE, DOZENS)]
    made, cov = perturb_rows(rows, PerturbConfig(seed=1))
    assert cov.perturbed == len(made) == 3 and cov.skipped == {"tied question numbers held, none left free": 1}
    assert cov.relations == {"recomputed sum": 1, "held conversion": 1}
    assert cov.as_dict()["relations"] == {"recomputed sum": 1, "held conversion": 1}


def test_twins_keep_the_calendar_and_the_article():
    question = ("Ed works 5 days a week for 50 weeks a year, 8 hours a day, at $20 an hour. How much does he earn "
                "in a year?")
    solution = ("He works 5 * 50 = <<5*50=250>>250 days.\nThat is 250 * 8 = <<250*8=2000>>2000 hours.\nHe earns "
                "2000 * 20 = $<<2000*20=40000>>40000.\n#### 40000")
    made = [numbers(t.question)[:3] for t in twins(question, solution, seeds=40)]
    assert len(made) >= 20 and all(d <= 7 and w <= 52 and h <= 24 for d, w, h in made), made
    assert any(d != 5 for d, _, _ in made) and any(w != 50 for _, w, _ in made)  # they do change
    articles = [re.search(r"\b(an?) (\d+)-day", t.question).groups() for t in twins(*TRIP, seeds=40)]
    assert {a for a, n in articles if n in ("8", "11", "18")} <= {"an"} and {a for a, n in articles if n[0] != "8"
                                                                            and n not in ("11", "18")} == {"a"}
    assert any(n == "8" for _, n in articles)  # "an 8-day trip", never "a 8-day trip"


def test_a_constant_added_in_the_head_holds_its_terms():
    # GSM8K test items 452 and 932: "3 hours" is 2 + 1 and "5 girls" is 4 friends + Maria, neither written down;
    # before constant sums were held, seed 0 gave "60 mph for 5 hours ... 330 miles/3 hours = 110 mph".
    car = (("A car is on a road trip and drives 60 mph for 2 hours, and then 30 mph for 1 hour. What is the car's "
           "average speed in mph during this trip?"),
           ("The car drives 60*2=<<60*2=120>>120 miles for 2 hours.\nThe car drives 30*1=<<30*1=30>>30 miles for 1 "
           "hour.\nIt drives a total of 120+30=<<120+30=150>>150 miles.\nLet S be the average speed, M be the "
           "number of miles, and H the number of hours spent driving.\nThen we have, S=M/H, so, S=150 miles/3 "
           "hours = <<150/3=50>>50 mph\n#### 50"))
    balloons = (("Maria invited 4 of her friends over for a water balloon fight in the backyard. At the start of the "
                "game, Maria gave each of her friends 2 water balloons. She had one water balloon for herself.  "
                "Then her mom came out and gave each person 3 more balloons.  How many total balloons did the "
                "girls have?"),
                ("Maria's 4 friends started with 2 balloons * 4 = <<2*4=8>>8 balloons.\nMaria started with 1 "
                "balloon + 8 balloons = <<1+8=9>>9 balloons to begin with.\nMaria's mom came out and gave each girl "
                "3 more balloons, which is 5 girls * 3 balloons = <<5*3=15>>15 balloons.\nTotal balloons used by "
                "the girls is 9 + 15 = <<9+15=24>>24 balloons.\n#### 24"))
    assert ("held constant sum", "3 = 1 + 2") in perturb_item(*car, PerturbConfig()).relations
    for twin in twins(*car):
        fast, hours, slow, slow_hours = numbers(twin.question)
        assert final_answer(twin.answer) == (fast * hours + slow * slow_hours) / (hours + slow_hours), twin.question
    for twin in twins(*balloons):
        friends, each, more = numbers(twin.question)
        assert final_answer(twin.answer) == friends * each + 1 + (friends + 1) * more, twin.question


def test_coefficients_of_an_unknown_are_held():
    # GSM8K test item 1220: "4x + x = 40 ... 5x = 40 ... 40 / 5": the 5 is 4 + 1 worked out in the head, so
    # a twin with "6 times longer" kept "40/5" and answered 48 (the right answer is not even whole).
    board = (("Ian has a board that is 40 feet long. He decides to make a cut so he can have two pieces. The longer "
             "piece is 4 times longer than the shorter piece. How long is the longer piece?"),
             ("Let x be the length of the shorter piece.\nThe two pieces are 4x and x in length.\nThe equation is 4x "
             "+ x = 40 when the lengths of the two boards are added.\nAdding like terms makes the equation 5x = 40."
             "\nThen dividing 40 by 5 gives the value of x which is <<40/5=8>>8.\nSince x =8, the longer piece is "
             "4*8 = 32.\n#### 32"))
    assert {(r.kind, r.value) for r in find_relations(board[0])} == set()
    made = 0
    for twin in twins(*board):
        made += 1
        length, times = numbers(twin.question)
        assert times == 4 and final_answer(twin.answer) == length * times / (times + 1), twin.question
        assert ("held coefficient", "4, a coefficient of the unknown in the solution") in twin.relations
    assert made >= 6
