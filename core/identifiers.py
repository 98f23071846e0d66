"""One form of an identifier for every comparison: sign-in, throttling, uniqueness (the attack review's F6).

People type addresses in many spellings that mean one account: `Marketing@…`, ` marketing@… `, and Unicode's
compatibility forms — a full-width `ｍarketing@…` or a mathematical `𝐚dmin@…`, which Django's sign-in form folds
to the plain letters (NFKC) before it looks the user up. A check that compares another spelling (a throttle keyed on
the lower-cased text) is bypassed by each of them. So every comparison of an identifier uses `identifier_key`:
Unicode NFKC, case-folded (which also folds `ß` to `ss` and final `ς` to `σ`), NFKC again (case folding can leave a
string that is not in NFKC), without surrounding white space.
"""

from __future__ import annotations

import unicodedata


def identifier_key(value: str) -> str:
    """The form an identifier is compared in (NFKC_Casefold, stripped)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold()).strip()


def identifier_text(value: str) -> str:
    """The form an identifier is stored and shown in: NFKC, lower case, stripped (casefold would turn a `ß` the
    person typed into `ss`, which is not the address they gave)."""
    return unicodedata.normalize("NFKC", value).strip().lower()
