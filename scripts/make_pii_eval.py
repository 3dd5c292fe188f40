#!/usr/bin/env python3
"""Writes the labelled PII evaluation sets of datasets/pii_eval/ (fixed seed).

  python3 scripts/make_pii_eval.py            # from the repository root

- recall.jsonl: texts (free text and tool-call arguments) with planted
  entities, one line each: {"id", "kind": "text"|"args", "text" or "args",
  "entities": [{"type", "value"}]}.
- precision.jsonl: function-calling style requests with no personal data at
  all, full of places, airports, landmarks, brands, capitalised words and
  look-alike numbers: every placeholder the redactor puts there is a false
  positive.

So that the measurement is not the detector's rule list read back, the
person names here are not in src/redact/data/{first_names,surnames}.txt (the
script checks), and the templates were written for this set.
"""
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "datasets" / "pii_eval"
SEED = 20261130

FIRST = """Aarav Abebe Adaeze Agnieszka Ahmed Aiko Alejandro Aleksander Amara Anders Anouk Arjun Astrid Ayşe
Bartholomew Beatriz Bilal Björn Bogdan Caoimhe Chiara Chidi Cosmin Dagny Dariusz Dmitri Dunja Eero Efua Eleni
Emeka Esra Evander Fatou Femi Fiorella Florin Gaspard Giedre Gunnar Hamid Hanne Haruto Hyun Ifeoma Ignacio Ilse
Imani Ingrid Isidora Jarrah Jorunn Józef Kalani Kasimir Kwabena Laila Leopoldo Liesel Luana Lucjan Mahnaz Malak
Marisol Mateus Mehmet Mirela Nadia Nkechi Noor Oisín Olufemi Oskar Paavo Parisa Quilla Radomir Ravi Rosalind
Ruairi Sanna Saoirse Seun Siobhan Sunniva Tadeo Tamsin Teodora Thandiwe Tomasz Ulla Vesna Vikram Wanjiru Xiadani
Yannick Yaw Yesenia Zainab Zdenek Zofia""".split()

LAST = """Abernathy Achterberg Adeyemi Alvarenga Andersson Arakawa Balogun Barkowski Bergström Bianchi Bouchard
Castellanos Chakraborty Ciobanu Dąbrowski Delacroix Dimitriou Ekwueme Fairweather Fitzgerald Gallagher Gonçalves
Grünewald Halvorsen Hashemi Haugland Iwasaki Jankowski Jovanović Kaczmarek Kowalczyk Lindqvist Lombardi Macharia
Mahlangu Marchetti Nakamura Nieminen Nowakowski Obradović Okonkwo Olabode Papadakis Petrović Quintero Rasmussen
Rautenbach Sandoval Schönberg Szczepański Takahashi Thorsen Underwood Valdivia Vasquez Venkataraman Wainwright
Whitlock Wojcik Yamaguchi Yilmaz Zielinski Zimmermann""".split()

PLACES = """San Francisco|San Diego|San Jose|Los Angeles|New York|Washington D.C.|Paris Charles de Gaulle|
Rio de Janeiro|Buenos Aires|Santa Monica|St. Louis|Fort Worth|Las Vegas|Salt Lake City|Mexico City|
Hong Kong|Kuala Lumpur|Cape Town|Tel Aviv|Abu Dhabi|New Delhi|São Paulo|Santa Barbara|San Antonio|
Kansas City|Oklahoma City|Baton Rouge|Grand Rapids|Colorado Springs|Virginia Beach|Palo Alto|Mountain View|
Lake Tahoe|Mount Everest|Golden Gate Bridge|Central Park|Times Square|Niagara Falls|Yellowstone|
Heathrow|Gatwick|John F. Kennedy airport|LaGuardia|Frankfurt Main|Amsterdam Schiphol|Madrid Barajas|
Tokyo Haneda|Sydney Kingsford Smith|Vancouver|Montreal|Quebec City|Edinburgh|Dublin|Lisbon|Porto|
Florence|Venice|Milan|Munich|Zurich|Geneva|Vienna|Prague|Kraków|Budapest|Reykjavik|Oslo|Helsinki|
Stockholm|Copenhagen|Marseille|Nice|Lyon|Seville|Valencia|Barcelona|Istanbul|Athens|Dubai|Singapore|
Bangkok|Seoul|Osaka|Kyoto|Auckland|Wellington|Melbourne|Brisbane|Perth|Victoria|Charlotte|Jackson|
Austin|Denver|Phoenix|Portland|Savannah|Madison|Lincoln|Florence Italy|Georgetown|Santiago|Lima|Bogotá""".replace("\n", "").split("|")

BRANDS = """iPhone 15 Pro|Galaxy S24|PlayStation 5|Tesla Model Y|Kindle Paperwhite|Nike Air Max|AirPods Pro|
Microsoft Teams|Google Sheets|Visual Studio Code|Spotify Premium|Netflix|Adobe Photoshop|Dell XPS 13|
Nintendo Switch|Dyson V15|Instant Pot|KitchenAid mixer|Lego Millennium Falcon|Apple Watch Ultra""".replace("\n", "").split("|")


def lexicon(name):
    p = ROOT / "src" / "redact" / "data" / name
    return {l.strip().lower() for l in p.read_text().splitlines() if l.strip() and not l.startswith("#")}


def person(rng):
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


STREETS = ["Oak", "Maple", "Cedar", "Willow", "Lakeview", "Hillcrest", "Sunset", "Riverside", "Highland", "Chestnut"]
SUFFIX = ["Street", "St.", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Lane", "Drive", "Court"]
US_CITIES = [("Springfield", "IL", "62704"), ("Madison", "WI", "53703"), ("Boulder", "CO", "80302"),
             ("Tucson", "AZ", "85701"), ("Albany", "NY", "12207"), ("Eugene", "OR", "97401")]
UK = [("Baker Street", "London", "NW1 6XE"), ("Deansgate", "Manchester", "M3 4LQ"),
      ("Rose Street", "Edinburgh", "EH2 2PR"), ("Park Row", "Leeds", "LS1 5HD")]
EU = [("Hauptstraße", "10115 Berlin"), ("Rue de Rivoli", "75001 Paris"), ("Calle Mayor", "28013 Madrid"),
      ("Via Roma", "00184 Roma"), ("Keizersgracht", "1015 CX Amsterdam"), ("Rynek Główny", "31-042 Kraków")]


def address(rng):
    k = rng.randrange(6)
    if k == 0:
        c = rng.choice(US_CITIES)
        return f"{rng.randint(10, 9899)} {rng.choice(STREETS)} {rng.choice(SUFFIX)}, {c[0]}, {c[1]} {c[2]}"
    if k == 1:
        c = rng.choice(US_CITIES)
        return f"{rng.randint(10, 9899)} {rng.choice(STREETS)} {rng.choice(SUFFIX)}, Apt {rng.randint(1, 40)}{rng.choice('ABCD')}, {c[0]}, {c[1]} {c[2]}"
    if k == 2:
        c = rng.choice(US_CITIES)
        return f"PO Box {rng.randint(100, 99999)}, {c[0]}, {c[1]} {c[2]}"
    if k == 3:
        s, city, pc = rng.choice(UK)
        return f"Flat {rng.randint(1, 12)}, {rng.randint(1, 300)} {s}, {city} {pc}"
    if k == 4:
        s, rest = rng.choice(EU)
        return f"{s} {rng.randint(1, 120)}, {rest}"
    c = rng.choice(US_CITIES)
    return f"{rng.randint(10, 9899)} {rng.choice(STREETS)} {rng.choice(SUFFIX)}\n{c[0]}, {c[1]} {c[2]}"


def luhn_ok(digits):
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def card(rng):
    while True:
        d = "4" + "".join(str(rng.randrange(10)) for _ in range(15))
        if luhn_ok(d):
            return " ".join(d[i:i + 4] for i in range(0, 16, 4))


def iban(rng):
    bban = "".join(str(rng.randrange(10)) for _ in range(18))
    # DE: 18-digit BBAN; check digits by mod 97.
    num = int(bban + "131400")  # D=13 E=14 00
    check = 98 - num % 97
    return f"DE{check:02d}{bban}"


def phone(rng):
    k = rng.randrange(4)
    if k == 0:
        return f"+1 ({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    if k == 1:
        return f"+44 20 {rng.randint(7000, 8999)} {rng.randint(1000, 9999)}"
    if k == 2:
        return f"+49 30 {rng.randint(100000, 999999)}"
    return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"


def email(rng, name):
    first, last = name.lower().split(" ", 1)
    dom = rng.choice(["example.com", "mail.example.org", "corp.example.net", "example.co.uk"])
    return f"{first[0]}.{last.replace(' ', '')}@{dom}".encode("ascii", "ignore").decode()


PERSON_TEXT = [
    "Hi, my name is {p} and I need to change my booking.",
    "Dear {p},\nthank you for your order.",
    "Please loop in {p} before Friday.",
    "cc: {p}",
    "Can you schedule a call with {p} next week?",
    "I'm writing on behalf of {p}, who is travelling.",
    "Best regards,\n{p}",
    "The invoice should be addressed to {p}.",
    "Book a table for {p} at 7pm.",
    "{p} reported that the login page is down.",
    "Forward this to {p} in accounting.",
    "Thanks, {p}",
    "Passenger: {p}",
    "Contact person: {p}",
    "Send the contract to Dr. {p} for review.",
    "Ms. {p} will pick up the parcel.",
]
ARG_KEYS = ["name", "full_name", "passenger", "contact", "customer_name", "attendee", "recipient", "guest"]
ADDR_TEXT = [
    "Please ship it to {a}.",
    "My new address is {a}",
    "Deliver to: {a}",
    "We moved to {a}, please update the account.",
    "Billing address:\n{a}",
]
ADDR_KEYS = ["address", "shipping_address", "destination", "billing_address", "home_address"]


def recall_set(rng):
    items = []
    for i in range(240):
        p = person(rng)
        if rng.random() < 0.7:
            t = rng.choice(PERSON_TEXT).format(p=p)
            items.append({"kind": "text", "text": t, "entities": [{"type": "PERSON", "value": p}]})
        else:
            k = rng.choice(ARG_KEYS)
            items.append({"kind": "args", "args": {k: p, "date": "2026-03-14"},
                          "entities": [{"type": "PERSON", "value": p}]})
    for i in range(160):
        a = address(rng)
        if rng.random() < 0.7:
            t = rng.choice(ADDR_TEXT).format(a=a)
            items.append({"kind": "text", "text": t, "entities": [{"type": "ADDRESS", "value": a}]})
        else:
            items.append({"kind": "args", "args": {rng.choice(ADDR_KEYS): a, "express": True},
                          "entities": [{"type": "ADDRESS", "value": a}]})
    for i in range(80):
        p = person(rng)
        e = email(rng, p)
        items.append({"kind": "text", "text": f"Reach me at {e} if anything changes.",
                      "entities": [{"type": "EMAIL", "value": e}]})
    for i in range(80):
        ph = phone(rng)
        items.append({"kind": "text", "text": f"Call me back on {ph} after 5pm.",
                      "entities": [{"type": "PHONE", "value": ph}]})
    for i in range(40):
        c = card(rng)
        items.append({"kind": "text", "text": f"Charge the card {c}, exp 09/28.",
                      "entities": [{"type": "CREDIT_CARD", "value": c}]})
    for i in range(40):
        b = iban(rng)
        items.append({"kind": "text", "text": f"Refund to IBAN {b} please.",
                      "entities": [{"type": "IBAN", "value": b}]})
    for i in range(40):
        ip = f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        items.append({"kind": "text", "text": f"The request came from {ip} at midnight.",
                      "entities": [{"type": "IP_ADDRESS", "value": ip}]})
    return items


PREC_TEXT = [
    "What's the weather in {place} tomorrow?",
    "Find flights from {place} to {place2} on Friday.",
    "Book a hotel near {place} for three nights.",
    "How far is {place} from {place2} by car?",
    "What time is it in {place} right now?",
    "Show me restaurants in {place} open on Sunday.",
    "Is the {brand} in stock at the {place} store?",
    "Compare the {brand} and the {brand2}.",
    "Convert 250 USD to EUR for my trip to {place}.",
    "Track order 4412-98 shipped from {place}.",
    "Set a reminder for the Monday stand-up at 9:30.",
    "Translate 'Good morning' into Portuguese for my visit to {place}.",
    "What's the population of {place}?",
    "List museums in {place} that are free on Wednesdays.",
    "Upgrade from version 2.14.3 to 3.0.1 of the {brand} app.",
    "Which gate does flight UA 1549 from {place} leave from?",
]


def precision_set(rng):
    items = []
    for i in range(400):
        t = rng.choice(PREC_TEXT).format(place=rng.choice(PLACES), place2=rng.choice(PLACES),
                                        brand=rng.choice(BRANDS), brand2=rng.choice(BRANDS))
        items.append({"kind": "text", "text": t, "entities": []})
    for i in range(100):
        args = {"city": rng.choice(PLACES), "destination_airport": rng.choice(PLACES),
                "product": rng.choice(BRANDS), "quantity": rng.randint(1, 5)}
        items.append({"kind": "args", "args": args, "entities": []})
    return items


def main():
    rng = random.Random(SEED)
    names = lexicon("first_names.txt") | lexicon("surnames.txt")
    clash = sorted(w for w in FIRST + LAST if w.lower() in names)
    assert not clash, f"names the detector's lexicon holds: {clash}"
    OUT.mkdir(parents=True, exist_ok=True)
    for fname, items in [("recall.jsonl", recall_set(rng)), ("precision.jsonl", precision_set(rng))]:
        with open(OUT / fname, "w", encoding="utf-8") as f:
            for n, it in enumerate(items):
                f.write(json.dumps({"id": n, **it}, ensure_ascii=False) + "\n")
        print(f"{fname}: {len(items)} items")


if __name__ == "__main__":
    main()
