"""Write an invented-facts dev set whose relations and sentence shapes tools/data/fictional.jsonl lacks.

    python tools/make_invented_facts.py [--seed 7] [--docs 40] [--out tools/data/invented_facts.jsonl]

Every document is one short paragraph of invented names (syllables drawn with ``--seed``, so the same seed
writes the same file), with 2-3 questions. What it adds to the older set:
- organisations (bakeries, presses, societies, companies), places (towns, rivers), works (novels, paintings,
  operas) and events (battles, festivals, fairs);
- facts inside subordinate clauses ("..., which Orla Venn founded in 1921 in Tamsby, ...");
- several names of one kind in a passage (two people, two towns, two years), so choosing the right one matters;
- an occupation beside the asked organisation ("a weaver who opened the Tollan Bakery"): the trap that a
  few-shot example about occupations set for the old short-answer pass.

Output lines have the shape of fictional.jsonl: {"id", "text", "questions": [{"q", "a": [aliases]}]}. A person's
aliases are the full name and the surname; an organisation's, its name with and without its kind ("Tollan
Bakery", "Tollan"). Source: this generator; licence: MIT, like the repository.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "t", "th", "v", "w",
          "c", "st"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea"]
CODAS = ["", "", "", "n", "r", "l", "m", "s", "th", "nd", "rk"]
OCCUPATIONS = ["weaver", "potter", "carpenter", "sailor", "teacher", "miller", "glazier", "farmer", "surgeon",
               "clockmaker", "tailor", "chemist", "printer", "fisherman", "stonemason", "lawyer"]
NATIONS = ["Welsh", "Danish", "Portuguese", "Polish", "Irish", "Austrian", "Chilean", "Norwegian"]
GOODS = ["copper kettles", "wool blankets", "paper lanterns", "glass beads", "rope ladders", "tin whistles",
         "oak barrels", "silk scarves"]
SHOPS = ["Bakery", "Bookshop", "Pharmacy", "Brewery", "Tannery", "Dairy"]
LANGUAGES = ["French", "Japanese", "Finnish", "Greek", "Hungarian", "Spanish"]
INSTRUMENTS = ["violin", "cello", "harp", "flute", "oboe", "trumpet"]


class Names:
    """Invented names, none used twice in a file."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def word(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or self.rng.choice([2, 2, 3])
            w = "".join(self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + self.rng.choice(CODAS)
                        for _ in range(n)).capitalize()
            if 4 <= len(w) <= 9 and w.lower() not in self.used and not re.search(r"(.)\1\1|(...).*\2", w.lower()):
                self.used.add(w.lower())
                return w

    def person(self) -> tuple[str, list[str]]:
        first, last = self.word(2), self.word()
        return f"{first} {last}", [f"{first} {last}", last]

    def year(self, avoid=()) -> str:
        while True:
            y = str(self.rng.randrange(1650, 1995))
            if y not in avoid:
                return y


def _a(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _org(name: str, kind: str) -> list[str]:
    return [f"{name} {kind}", name]


# Each template writes (text, [(question, aliases)]) from fresh names.
def bakery(n: Names, r: random.Random):
    (p, pa), shop, occ, nat = n.person(), r.choice(SHOPS), r.choice(OCCUPATIONS), r.choice(NATIONS)
    o, t, y = n.word(), n.word(), n.year()
    last = p.split()[1]
    rest = "still bakes there every morning" if shop == "Bakery" else "still works there every morning"
    text = (f"{p} is {_a(nat)} {nat} {occ} who opened the {o} {shop} in {y}. {last} was born in the village of {t} "
            f"and {rest}.")
    return text, [(f"Which {shop.lower()} did {p} open?", _org(o, shop)),
                  (f"In which village was {p} born?", [t]),
                  (f"When did {p} open the {o} {shop}?", [y])]


def society(n: Names, r: random.Random):
    (p1, a1), (p2, a2) = n.person(), n.person()
    o, t1, t2, y = n.word(), n.word(), n.word(), n.year()
    text = (f"The {o} Society, which {p1} founded in {y} in the town of {t1}, moved to {t2} after a fire "
            f"destroyed its hall. Its first president was the {r.choice(OCCUPATIONS)} {p2}.")
    return text, [(f"Who founded the {o} Society?", a1),
                  (f"To which town did the {o} Society move after the fire?", [t2]),
                  (f"Who was the first president of the {o} Society?", a2)]


def novel(n: Names, r: random.Random):
    (p1, a1), (p2, a2), lang = n.person(), n.person(), r.choice(LANGUAGES)
    title, press, y = f"The {n.word()} Lantern", n.word(), n.year()
    text = (f"{title}, a novel by {p1}, was published in {y} by the {press} Press. It was translated into "
            f"{lang} by {p2}, who had been the author's neighbour.")
    return text, [(f"Who wrote {title}?", a1),
                  (f"Which press published {title}?", _org(press, "Press")),
                  (f"Who translated {title} into {lang}?", a2)]


def battle(n: Names, r: random.Random):
    (p1, a1), (p2, a2) = n.person(), n.person()
    b, v, y = n.word(), n.word(), n.year()
    text = (f"The Battle of {b} was fought in {y} near the village of {v}, where the army of {p1} defeated "
            f"the army of {p2}. A stone marks the field today.")
    return text, [(f"Near which village was the Battle of {b} fought?", [v]),
                  (f"Whose army won the Battle of {b}?", a1),
                  (f"In what year was the Battle of {b} fought?", [y])]


def harbour(n: Names, r: random.Random):
    (p, pa) = n.person()
    town, river, t2, t3, bell, y = n.word(), n.word(), n.word(), n.word(), n.word(), n.year()
    text = (f"{town}, a harbour town on the river {river}, lies between {t2} and {t3}. Its cathedral, which "
            f"was built by {p} in {y}, holds a bell called {bell}.")
    return text, [(f"On which river does {town} lie?", [river]),
                  (f"Who built the cathedral of {town}?", pa),
                  (f"What is the bell in the cathedral of {town} called?", [bell])]


def festival(n: Names, r: random.Random):
    (p1, a1), (p2, a2), inst = n.person(), n.person(), r.choice(INSTRUMENTS)
    fest, town, y = n.word(), n.word(), n.year()
    text = (f"Every spring the town of {town} holds the {fest} Festival. Its first prize went in {y} to "
            f"{p1}, {_a(inst)} {inst} player who had studied with {p2}.")
    return text, [(f"Which town holds the {fest} Festival?", [town]),
                  (f"Who won the first prize at the {fest} Festival in {y}?", a1),
                  (f"What instrument does {p1} play?", [inst])]


def painting(n: Names, r: random.Random):
    (p1, a1), (p2, a2) = n.person(), n.person()
    title, museum, city = f"{n.word()} at Dusk", n.word(), n.word()
    text = (f"The painting {title} hangs in the {museum} Museum in {city}. It was painted by {p1}, whose "
            f"pupil {p2} restored it after the flood.")
    return text, [(f"Who painted {title}?", a1),
                  (f"Who restored the painting {title}?", a2),
                  (f"In which museum does {title} hang?", _org(museum, "Museum"))]


def company(n: Names, r: random.Random):
    (p1, a1), (p2, a2), occ, goods = n.person(), n.person(), r.choice(OCCUPATIONS), r.choice(GOODS)
    co, t1, t2 = n.word(), n.word(), n.word()
    text = (f"{p1}, who worked as a {occ} in {t1}, started the {co} Company with her brother {p2}. The "
            f"company, which is based in {t2}, makes {goods}.")
    return text, [(f"Where is the {co} Company based?", [t2]),
                  (f"What does the {co} Company make?", [goods]),
                  (f"Who started the {co} Company with {p1}?", a2)]


def opera(n: Names, r: random.Random):
    (p1, a1), (p2, a2) = n.person(), n.person()
    title, orch, city, y1 = f"The {n.word()} Crown", n.word(), n.word(), n.year()
    y2 = n.year(avoid={y1})
    text = (f"The opera {title} was composed by {p1} in {y1} for the {orch} Orchestra. It was first "
            f"performed in {city} in {y2}, conducted by {p2}.")
    return text, [(f"Who composed the opera {title}?", a1),
                  (f"In which city was {title} first performed?", [city]),
                  (f"Who conducted the first performance of {title}?", a2)]


def fair(n: Names, r: random.Random):
    (p1, a1), goods = n.person(), r.choice(GOODS)
    fair_, t1, t2, y = n.word(), n.word(), n.word(), n.year()
    text = (f"The {fair_} Fair, where merchants from {t1} sold {goods}, was held each autumn in {t2} until "
            f"{y}, when the mayor {p1} closed it.")
    return text, [(f"In which town was the {fair_} Fair held?", [t2]),
                  (f"Who closed the {fair_} Fair?", a1),
                  (f"What did the merchants from {t1} sell at the {fair_} Fair?", [goods])]


TEMPLATES = (bakery, society, novel, battle, harbour, festival, painting, company, opera, fair)


def make(seed: int, docs: int, questions_per_doc: int = 2) -> list[dict]:
    """``docs`` documents, templates in turn; each keeps ``questions_per_doc`` of its questions (drawn), plus
    a third for every third document."""
    rng = random.Random(seed)
    names = Names(rng)
    out = []
    for i in range(docs):
        text, qs = TEMPLATES[i % len(TEMPLATES)](names, rng)
        keep = questions_per_doc + (1 if i % 3 == 0 else 0)
        picked = sorted(rng.sample(range(len(qs)), min(keep, len(qs))))
        out.append({"id": f"n{i + 1:02d}", "text": text,
                    "questions": [{"q": qs[j][0], "a": qs[j][1]} for j in picked]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--out", default=str(Path(__file__).parent / "data" / "invented_facts.jsonl"))
    args = ap.parse_args()
    rows = make(args.seed, args.docs)
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(rows)} documents, {sum(len(r['questions']) for r in rows)} questions")


if __name__ == "__main__":
    main()
