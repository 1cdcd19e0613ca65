"""Name and object swaps: surface changes that leave every number and the answer untouched.

A model that recalls "Janet's ducks lay 16 eggs" by its surface may stumble on "Maria's ducks"; one that
reasons does not care. Swaps apply to whole words in question and solution alike, keep the gender of a name
(pronouns stay right) and the number of an object (singular <-> singular, plural <-> plural).
"""

from __future__ import annotations

import random
import re

FEMALE = ("Janet", "Mary", "Sarah", "Emily", "Anna", "Lisa", "Maria", "Rose", "Julia", "Emma", "Olivia", "Sophia",
          "Grace", "Alice", "Nancy", "Karen", "Helen", "Laura", "Jenny", "Kate", "Linda", "Susan", "Amy", "Betty",
          "Carla", "Diana", "Elena", "Fiona", "Hannah", "Irene", "Jane", "Lucy", "Megan", "Nina", "Paula",
          "Rachel", "Tina", "Wendy", "Zoe", "Mia")
MALE = ("John", "James", "Tom", "Mark", "David", "Michael", "Robert", "Paul", "Peter", "Jack", "Sam", "Ben",
        "Carlos", "Daniel", "Eric", "Frank", "George", "Henry", "Ivan", "Kevin", "Leo", "Noah", "Oscar", "Ryan",
        "Steve", "Tony", "Victor", "Will", "Adam", "Brian", "Chris", "Dylan", "Ethan", "Felix", "Greg", "Josh",
        "Luke", "Max", "Nick", "Owen")
# (singular, plural) pairs that can stand in for one another in a word problem.
OBJECTS = (("apple", "apples"), ("orange", "oranges"), ("cookie", "cookies"), ("cupcake", "cupcakes"),
           ("pencil", "pencils"), ("marker", "markers"), ("marble", "marbles"), ("sticker", "stickers"),
           ("book", "books"), ("magazine", "magazines"), ("shirt", "shirts"), ("sweater", "sweaters"))


def _swap_map(text: str, pool: tuple[str, ...], rng: random.Random) -> dict[str, str]:
    present = [n for n in pool if re.search(rf"\b{n}\b", text)]
    free = [n for n in pool if n not in present]
    rng.shuffle(free)
    return dict(zip(present, free))


def _object_map(text: str, rng: random.Random) -> dict[str, str]:
    singulars = [s for s, _ in OBJECTS]
    present = [s for s, p in OBJECTS if re.search(rf"\b(?:{s}|{p})\b", text, re.IGNORECASE)]
    free = [s for s in singulars if s not in present]
    rng.shuffle(free)
    plural = dict(OBJECTS)
    out: dict[str, str] = {}
    for old, new in zip(present, free):
        out[old], out[plural[old]] = new, plural[new]
    return out


def _apply(text: str, mapping: dict[str, str], ignore_case: bool) -> str:
    """Replace whole words at once (so swaps never chain: Mary -> Anna and Anna -> Mary both hold)."""
    if not mapping:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(mapping, key=len, reverse=True))) + r")\b",
                         re.IGNORECASE if ignore_case else 0)

    def sub(m: re.Match) -> str:
        word = m.group()
        new = mapping.get(word) or mapping[word.lower()]
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return pattern.sub(sub, text)


def swap_entities(question: str, solution: str, rng: random.Random, names: bool = True,
                  objects: bool = False) -> tuple[str, str, dict[str, str]]:
    """Question and solution with names (and objects) swapped consistently, and the swaps made."""
    mapping: dict[str, str] = {}
    if names:
        mapping |= _swap_map(question, FEMALE, rng) | _swap_map(question, MALE, rng)
    if objects:
        mapping |= _object_map(question, rng)
    names_only = {k: v for k, v in mapping.items() if k[0].isupper()}
    things = {k: v for k, v in mapping.items() if not k[0].isupper()}
    question = _apply(_apply(question, things, True), names_only, False)
    solution = _apply(_apply(solution, things, True), names_only, False)
    return question, solution, mapping
