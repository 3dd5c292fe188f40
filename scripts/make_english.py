#!/usr/bin/env python3
"""Builds src/redact/data/english.txt.gz, the common English words the
person-name detector consults: two or three capitalised words that are
none of them an English word, a listed place or an organisation word
("Seun Berisha", "Magnhild Barzani") are taken for a name where a run of
English words ("Harvest Moon", "Visual Studio Code") is not.

  python3 scripts/make_english.py /usr/share/dict/american-english

Source: SCOWL (Spell Checker Oriented Word Lists) by Kevin Atkinson, as
packaged by Debian in `wamerican` (size 50). Licence: "Permission to use,
copy, modify, distribute and sell these word lists, the associated
scripts, the output created from the scripts, and its documentation for
any purpose is hereby granted without fee, provided that the above
copyright notice appears in all copies and that both that copyright
notice and this permission notice appear in supporting documentation."
Copyright 2000-2011 by Kevin Atkinson (and the authors listed in SCOWL's
README).

Only the words the list writes in lower case are kept (capitalised
entries are proper nouns: names and places, exactly what must not count
as "English" here), without possessives, accents folded to ASCII. One
word per line, sorted.
"""
import gzip
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "redact" / "data" / "english.txt.gz"


def fold(w):
    return "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/dict/american-english")
    words = set()
    for line in src.read_text(encoding="utf-8").splitlines():
        w = line.strip()
        if not w or "'" in w or not w[0].islower():
            continue
        w = fold(w)
        if w.isascii() and w.isalpha() and len(w) >= 2:
            words.add(w)
    data = "".join(w + "\n" for w in sorted(words)).encode()
    # mtime 0: the same input gives the same bytes
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    print(f"{OUT.relative_to(ROOT)}: {len(words)} words, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
