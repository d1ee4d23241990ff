"""Full stops that end no sentence: a title, an initial or a dotted abbreviation ("Dr. Ruth Westheimer",
"J. R. R. Tolkien", "the U.S. Army"). Training targets are cut into sentences (augment.py) and short answers
into clauses (spans.py) at full stops; both keep a name whole across these."""
from __future__ import annotations

import re

_ABBREVIATION = re.compile(r"(?:^|[\s(\"'])(?:[A-Za-z]|(?:[A-Za-z]\.)+[A-Za-z]|ca|approx|incl|est|"
                           r"Dr|Mr|Mrs|Ms|Prof|St|Mt|Ft|Jr|Sr|Gen|Col|Capt|Lt|Sgt|Rev|Gov|Sen|Rep|Hon|"
                           r"No|Nos|vs|Inc|Ltd|Co|Corp|Bros|"
                           r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.$")


def ends_with_abbreviation(text: str) -> bool:
    """True when ``text`` ends with a word and a full stop that abbreviates it ("... founded by Dr.")."""
    return bool(_ABBREVIATION.search(text[-16:]))
