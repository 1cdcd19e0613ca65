"""Perturbation engine: exact arithmetic, hand-picked GSM8K items re-solved independently, broken chains caught."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from tinyeval.audit.perturb.chain import (
    ChainError,
    evaluate,
    final_answer,
    format_number,
    parse_number,
    verify_chain,
)
from tinyeval.audit.perturb.link import prose_echoes
from tinyeval.audit.perturb.prose import annotate_prose
from tinyeval.audit.perturb.swaps import swap_entities
from tinyeval.audit.perturb.twins import (
    PerturbConfig,
    Skip,
    perturb_item,
    perturb_rows,
    plan_item,
    question_vars,
    verify_twin,
)

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
    "chained_equation": (  # "2 * 4 + 3 * 6 = 8 + 18 = <<...>>": 8 and 18 become steps 2*4 and 3*6
        ("Amy had two eyeshadow palettes with four colors each and three makeup sets that came with six eyeshadow "
         "colors each. Her sister steals one of the palettes. Amy uses up half of the colors from one makeup set. How "
         "many eyeshadow colors does she have left?"),
        ("Amy had 2 * 4 + 3 * 6 = 8 + 18 = <<2*4+3*6=26>>26 eyeshadow colors to start.\nHer sister stole one "
         "palette of 4 colors, leaving Amy with 26 - 4 = <<26-4=22>>22 colors.\nHalf the colors from one makeup set "
         "are 6 / 2 = <<6/2=3>>3 colors.\nThus, Amy has 22 - 3 = <<22-3=19>>19 eyeshadow colors left.\n#### 19"),
        lambda palettes, colors, sets, set_colors: palettes * colors + sets * set_colors - colors - set_colors / 2,
    ),
    "number_follows_a_step": (  # "4 hours" on high is also the 2 * 2 = 4 degrees it warms: the hours follow it
        ("An air conditioner cools a room 2 degrees an hour on low and 3 degrees an hour on high. The room will warm "
         "up at 2 degrees an hour with no air conditioner running. The air conditioner ran on low for 3 hours, then "
         "it was turned up to high for 4 hours. Afterward, it was turned off for 2 hours. How many degrees lower "
         "than the starting temperature was the final temperature?"),
        ("The air conditioner ran for 3 hours on low, so the temperature dropped 2 * 3 = <<3*2=6>>6 degrees.\nIt "
         "then ran for 4 hours on high, so the temperature dropped another 3 * 4 = <<3*4=12>>12 degrees.\nIt was "
         "then turned off for 2 hours, so the temperature rose 2 * 2 = <<2*2=4>>4 degrees.\nThus, the final "
         "temperature was 6 + 12 - 4 = <<6+12-4=14>>14 degrees lower than the starting temperature.\n#### 14"),
        lambda low, high, warm, low_hours, high_hours, off: low * low_hours + high * high_hours - warm * off,
    ),
    "prose_restates_the_leaves": (  # "4/20 x 100% = 20%": by value the 20 and 4 could be steps; they are the leaves
        ("Of the 20 available cars for rent, 12 are automatic cars, 4 are manual cars, and the rest are "
         "semi-automatic. What percentage of the cars are semi-automatic?"),
        ("12 + 4 = <<12+4=16>>16 cars are either automatic or manual.\nSo, 20 - 16 = <<20-16=4>>4 cars are "
         "semi-automatic.\nTherefore, the percentage of semi-automatic cars is 4/20 x 100% = 20%.\n#### 20"),
        lambda total, automatic, manual: (total - automatic - manual) / total * 100,
    ),
    "a_quarter_coin": (  # "a quarter" beside nickels, dimes and cents is 25 cents
        ("James likes to check the coin return of the vending machine for change. One day he finds a quarter, two "
         "nickels, and 7 dimes. How much money in cents does James have?"),
        ("First figure out how much the nickels are worth: 2 * 5 cents = <<2*5=10>>10 cents\nThen figure out how "
         "much the dimes are worth: 7 * 10 cents = <<7*10=70>>70 cents\nFinally, add the value of the nickels, "
         "dimes and quarter: 25 cents + 10 cents + 70 cents = <<25+10+70=105>>105 cents\n#### 105"),
        lambda nickels, dimes: 25 + 5 * nickels + 10 * dimes,
    ),
    "twenties_are_bills": (  # "ten twenties" are $20 bills
        ("Carrie was given ten twenties and 140 quarters by her aunt to use for lunch. If she spent all the quarters "
         "and 3/5 of the twenties, calculate the total amount of money she paid for the lunch."),
        ("Since she spent all the quarters, she paid her lunch partly by quarters totaling 140*$0.25 = "
         "$<<140*0.25=35>>35\nShe also used 3/5*10 = <<3/5*10=6>>6 of the twenties to pay for the lunch.\nThe "
         "total amount of the twenties that she used is 6*$20 = $<<6*20=120>>120\nShe spent $120+$35 = "
         "$<<120+35=155>>155 on the lunch.\n#### 155"),
        lambda twenties, quarters, num, den: quarters * Fraction(1, 4) + twenties * num / den * 20,
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
    "hundred_percent_is_not_a_step": (  # 400/4 = 100 a week, then "100-60" is 100%: once read as the week's $100
        ("Madeline and her roommate, Keenan, share the cost of groceries. In total, they spend about $400 per month. In "
         "a four-week month, how many dollars does Keenan spend per week if Madeline pays 60% of the cost?"),
        ("They spend $400/4=$<<400/4=100>>100 per week.\nKeenan pays for 100-60=<<100-60=40>>40% of the groceries."
         "\nThus, she spends $100*(40/100)=$<<100*40/100=40>>40 per week.\n#### 40"),
        lambda month, pct: month / 4 * (100 - pct) / 100,
    ),
    "a_quarter_is_not_a_step": (  # 12/3 = 4, then "12/4" is a quarter: once read as 12/(12/3)
        ("Cody and Trevor had 12 sandwiches. Cody ate a third of the sandwiches, and Trevor ate a quarter of the "
         "sandwiches. How many sandwiches are left?"),
        ("Cody ate 12/3=<<12/3=4>>4 sandwiches.\nTrevor ate 12/4=<<12/4=3>>3 sandwiches.\nCody and Trevor ate "
         "4+3=<<4+3=7>>7 sandwiches.\nThere are 12-7=<<12-7=5>>5 sandwiches left\n#### 5"),
        lambda total: total - total / 3 - total / 4,
    ),
    "pennies_are_not_cents_per_dollar": (  # "100 pennies" and "a dollar is 100 cents" are two different 100s
        ("Brady is counting the money in his piggy bank. He has 100 pennies, 40 nickels, 20 dimes, and 40 pieces of "
         "dollar bills. How much does Brady have in his piggy bank in dollars?"),
        ("Since a penny is 1 cent, then 100 pennies is equal to 100 x 1 cent = <<100=100>>100 cents.\nSince nickel is "
         "5 cents, then 40 nickels is equal to 40 x 5 = <<40*5=200>>200 cents.\nSince a dime is equal to 10 cents, "
         "then 20 dimes are equal to 20 x 10 = <<20*10=200>>200 cents.\nSo, Brady has a total of 100 + 200 + 200 = "
         "<<100+200+200=500>>500 cents.\nSince a dollar is equal to 100 cents, then 500 cents is equal to 500/100 = "
         "<<500/100=5>>5 dollars.\nThus, Brady has a total of $40 + $5 = $<<40+5=45>>45 in his piggy bank.\n#### 45"),
        lambda pennies, nickels, dimes, bills: bills + (pennies + 5 * nickels + 10 * dimes) / 100,
    ),
    "answer_equal_to_a_question_number": (  # "X = 10" solved in the head; 10 is also "10 tractors"
        ("A factory used to make tractors, but now makes silos. When they made tractors, they sold 10 tractors a day "
         "and made $100 per tractor. Now, they sell 5 silos a day, and make $220 per silo. What percentage more are "
         "they making per day now?"),
        ("They used to make $1,000 a day because 10 x 100 = <<10*100=1000>>1,000\nThey now make 1,100 a day because "
         "5 x 220 = <<5*220=1100>>1,100\nThey make 10% more per day because 1000 +(1000 x (X/100)) = 1,100 if X = 10"
         "\n#### 10"),
        lambda tractors, price, silos, silo_price: (silos * silo_price - tractors * price) / (tractors * price) * 100,
    ),
    "two_of_them_counts_players": (  # "Only two of them have over 20 points" is a count, not the "2 times"
        ("Three friends: Mike, Jim, and Tony decided to play a game. After 3 rounds Mike has 21 points, Jim 3 points "
         "less than Mike, and Tony 2 times more than Mike. In the fourth round, every player gets an extra point if "
         "they have over 20 points. How many points do all three players have in total after the extra points had "
         "been distributed?"),
        ("After 3 rounds Jim has 21 points - 3 points = <<21-3=18>>18 points.\nTony has 2 times more points than "
         "Mike, so he has 2 * 21 points = <<2*21=42>>42 points.\nIn total they have 42 points + 18 points + 21 points "
         "= <<42+18+21=81>>81 points.\nOnly two of them have over 20 points, so in total, all friends have 81 points "
         "+ 2 points = <<2+81=83>>83 points.\n#### 83"),
        lambda _three, _rounds, mike, less, times, over, _all_three: (lambda pts: sum(pts) + sum(p > over for p in pts))(
            (mike, mike - less, mike * times)),
    ),
}


WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                                    "fifteen sixteen seventeen eighteen nineteen twenty".split())}


def numbers(text: str) -> list[Fraction]:
    """The question's numbers in order, digits and the words two..twenty ("one" is grammar, never a number)."""
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


def twins(question: str, solution: str, seeds: int = 12):
    """The twins the engine makes for seeds 0 .. seeds-1 (items it skips are left out)."""
    for seed in range(seeds):
        try:
            yield perturb_item(question, solution, PerturbConfig(seed=seed))
        except Skip:
            continue


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_hand_picked_items_reproduce_correct_answers(name):
    question, solution, solve = ITEMS[name]
    assert solve(*numbers(question)) == final_answer(solution)  # the solver itself is right on the original
    made = 0
    for twin in twins(question, solution):
        made += 1
        verify_chain(twin.answer)
        assert twin.question != question
        assert final_answer(twin.answer) == solve(*numbers(twin.question)) != final_answer(solution)
    assert made >= 6, f"{name}: only {made} of 12 seeds gave a twin"


@pytest.mark.parametrize("name", sorted(RISKY))
def test_misreadings_give_no_wrong_twin(name):
    question, solution, solve = RISKY[name]
    assert solve(*numbers(question)) == final_answer(solution)
    for twin in twins(question, solution):
        assert final_answer(twin.answer) == solve(*numbers(twin.question)), twin.question


def test_a_sum_outside_the_chain_holds_its_terms():
    question = ("Molly is catering a birthday party for her sister and invited 16 people. 10 people want the chicken "
                "salad which is $6.50 per person and 6 people want the pasta salad at $6 per person. What is the total "
                "amount Molly will pay for the catering?")
    solution = ("The chicken salad will cost 10 * $6.50 = $<<10*6.5=65>>65.\nThe pasta salad will cost 6 * $6 = "
                "$<<6*6=36>>36.\nMolly will pay $65 + $36 = $<<65+36=101>>101.\n#### 101")
    made = 0
    for twin in twins(question, solution):
        made += 1
        invited, chicken, price, pasta, pasta_price = numbers(twin.question)
        assert invited == chicken + pasta, twin.question  # never "invited 16 people. 14 ... and 12 ..."
        assert final_answer(twin.answer) == chicken * price + pasta * pasta_price
    assert made >= 6


def test_chained_equation_partial_results_become_steps():
    out = annotate_prose("Amy had 2 * 4 + 3 * 6 = 8 + 18 = <<2*4+3*6=26>>26 colors.")
    assert out == "Amy had 2 * 4 + 3 * 6 = <<2*4=8>>8 + <<3*6=18>>18 = <<2*4+3*6=26>>26 colors."
    assert "<<30-12=18>>18/2" in annotate_prose("Sarah painted (30 - 12)/2 = 18/2 = <<(30-12)/2=9>>9 eggs.")
    assert "= <<2*4=8>>8 + <<3*6=18>>18 = <<8+18=26>>26" in annotate_prose("2 * 4 + 3 * 6 = 8 + 18 = 26 colors")
    for prose in ("2 * 4 + 3 * 6 = 8 + 19 = <<2*4+3*6=26>>26",  # 19 is no sub-calculation: left alone
                  "2 * 4 + 3 * 6 = 6 + 20 = <<2*4+3*6=26>>26"):  # same total, other shape
        assert annotate_prose(prose) == prose


def test_prose_echoes_are_the_leaves_they_restate():
    solution = "The magazine is $4/2 = $<<4/2=2>>2.\nThe pen is $2 - $1 = $<<2-1=1>>1.\n#### 1"
    steps = verify_chain(solution)
    echoes = prose_echoes(solution, steps)
    assert [(solution[p], at) for p, at in sorted(echoes.items())] == [("4", (0, 0)), ("2", (0, 1)), ("2", (1, 0)),
                                                                       ("1", (1, 1))]
    # "$10.5 because 3 x 3.5 =": only the calculation right before the "=" restates the leaves
    solution = "He makes $10.5 because 3 x 3.5 = <<3*3.5=10.5>>10.5\n#### 10.5"
    assert sorted(prose_echoes(solution, verify_chain(solution)).values()) == [(0, 0), (0, 1)]
    for solution in ("He has 3 and 4 more, 2 * 6 = <<3*4=12>>12", "3 x 4 = so <<3*4=12>>12"):
        assert not prose_echoes(solution, verify_chain(solution))  # other numbers, or no "=" right before


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
    assert cov.rate >= 0.85  # measured 0.8529 (1,125 at seed 0; 1,122 at seed 1), ties among question numbers kept
    assert not [k for k in cov.relations if k.startswith("not kept") and not k.endswith("outside sum")]  # enforced
    for twin in twins:
        verify_chain(twin.answer)
        assert final_answer(twin.answer) != final_answer(rows[twin.index]["answer"])
    again, _ = perturb_rows(rows[:50], PerturbConfig(seed=0))
    assert [t.question for t in again] == [t.question for t in twins if t.index < 50]  # seeded: reproducible


def test_perturb_benchmark_writes_gsm8k_format(tmp_path, data_root):
    from tinyeval.audit.perturb.twins import perturb_benchmark
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
