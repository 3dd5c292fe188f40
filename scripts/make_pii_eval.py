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
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "datasets" / "pii_eval"
SEED = 20261130

FIRST = """Alarik Abebe Adaeze Alvilda Ambrus Aiko Ardit Aleksander Arnav Asel Ashkan Awentia Bakhyt Besnik Bartholomew
Bronagh Catrin Ceren Damla Caoimhe Dorottya Chidi Cosmin Dagny Dariusz Edvard Dunja Eero Efua Eleni Elkin
Farida Evander Folasade Gaute Fiorella Florin Gaspard Giedre Gunnar Gulnara Hanne Gwenllian Halldor Ifeoma
Henrike Ilse Imani Iolanthe Isidora Jarrah Jorunn Józef Kalani Kasimir Isolde Laila Leopoldo Liesel Jurgis
Lucjan Mahnaz Malak Kiri Kolade Lanakila Mirela Lemlem Nkechi Lovisa Oisín Olufemi Madina Paavo Magnhild
Quilla Radomir Makoa Rosalind Ruairi Sanna Saoirse Seun Siobhan Sunniva Tadeo Tamsin Teodora Thandiwe Mattias
Ulla Vesna Nduka Nilufar Xiadani Oddny Pania Pernille Rangi Zdenek Rashida""".split()

LAST = """Abernathy Achterberg Abdulov Alvarenga Achebe Arakawa Balogun Barkowski Bergström Agbaje Bouchard Castellanos
Alderete Ciobanu Amundsen Delacroix Antonescu Ekwueme Fairweather Arslanoglu Bakshi Gonçalves Grünewald
Halvorsen Hashemi Haugland Iwasaki Barzani Belhadj Kaczmarek Berisha Lindqvist Bhattacharjee Macharia
Birkeland Bjornstad Brannigan Dahlgren Delgadillo Obradović Dragomir Olabode Eberhardt Elsayed Quintero
Enright Rautenbach Fagerlund Schönberg Szczepański Gashi Thorsen Underwood Valdivia Hakobyan Venkataraman
Wainwright Whitlock Hendrikse Hoxha Hrafnsson Kashani Lagerqvist""".split()

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


def fold(word):
    """Lower case with accents removed, as the lexicon files store names."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)).lower()


def lexicon(name):
    """Every word of a lexicon file (its lines hold many names each)."""
    p = ROOT / "src" / "redact" / "data" / name
    return {fold(w) for l in p.read_text().splitlines() if not l.startswith("#") for w in l.split()}


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


# ---------------------------------------------------------------------------
# Held-out extension (tagged "set": "heldout"). Written independently of the
# detector's rules, after the templates above had been tuned against; drawn
# from its own random.Random(SEED + 1) and appended after the items above, so
# that those stay byte-identical.

def persons(rng, k):
    """k people with distinct first names and distinct surnames."""
    return [f"{f} {l}" for f, l in zip(rng.sample(FIRST, k), rng.sample(LAST, k))]


# (template, how many people it names); {f} is a first name alone.
HO_PERSON_TEXT = [
    ("Set up a 1:1 between me and {p} for Thursday afternoon.", 1),
    ("{p} (our new hire) starts Monday, please create the accounts.", 1),
    ("Reply to {p}'s last message and tell them we ship on time.", 1),
    ("From: {p}\nSubject: Re: contract renewal\n\nLooks good to me, go ahead.", 1),
    ("Patient {p}, age 54, presents with a persistent dry cough.", 1),
    ("I spoke to {p} yesterday about the refund, she said it's approved.", 1),
    ("Assign the ticket to {p} and set the priority to high.", 1),
    ("Attendees were {p}, {p2} and {p3}.", 3),
    ("Meeting notes: {p} will own the rollout, {p2} handles comms.", 2),
    ("can you ask {p} whether the venue is confirmed?", 1),
    ("please draft a short email to {p} declining the offer politely", 1),
    ("According to {p}, the shipment left the warehouse on Tuesday.", 1),
    ("The new tenant, {p}, moves in on the 1st.", 1),
    ("Remind {p} to submit the expense report by end of day.", 1),
    ("Customer {p} called about a damaged item, wants a replacement.", 1),
    ("{p} and I are flying out together on the 12th, book adjacent seats.", 1),
    ("Who approved this change? I think it was {p}.", 1),
    ("Kind regards,\n\n{p}\nHead of Operations\nSent from my phone", 1),
    ("Add {p} as a reviewer on the pull request.", 1),
    ("Is {p} free on Wednesday? If not, try {p2}.", 2),
    ("Our landlord {p} wants the rent transferred by the 5th.", 1),
    ("Ticket 4821 opened by {p}: cannot reset password.", 1),
    ("Emergency contact: {p} (sister)", 1),
    ("Your driver {p} is 5 minutes away.", 1),
    ("The reservation is under {p}, party of four.", 1),
    ("Got a message from {p}: running late, start without me.", 1),
    ("Prof. {p} will chair the afternoon session.", 1),
    ("Dr {p} asked for a window seat.", 1),
    ("Hey {f}, quick question about the invoice you sent.", 1),
    ("Please send {p} a reminder about tomorrow's appointment.", 1),
    ("User: look up the last order for {p}, it hasn't arrived yet.", 1),
    ("Thanks again to {p} for covering the on-call shift!", 1),
]

HO_PERSON_ARGS = [
    lambda ps: ({"attendees": ps[:3], "title": "Quarterly planning", "start": "2026-04-02T10:00"}, 3),
    lambda ps: ({"attendees": ps[:2], "duration_minutes": 30}, 2),
    lambda ps: ({"passenger_name": ps[0], "flight": "BA 283", "seat": "14C"}, 1),
    lambda ps: ({"driver": ps[0], "vehicle": "Toyota Prius", "eta_minutes": 6}, 1),
    lambda ps: ({"assignee": ps[0], "ticket_id": "OPS-1423", "priority": "high"}, 1),
    lambda ps: ({"owner": ps[0], "repository": "billing-service", "visibility": "private"}, 1),
    lambda ps: ({"to": ps[0], "subject": "Q3 report", "body": "See attached."}, 1),
    lambda ps: ({"contact_name": ps[0], "company": "Northwind Traders Ltd"}, 1),
    lambda ps: ({"patient": ps[0], "appointment": "2026-05-11T09:15", "clinic": "cardiology"}, 1),
    lambda ps: ({"employee": ps[0], "start_date": "2026-06-01", "department": "Finance"}, 1),
    lambda ps: ({"author": ps[0], "title": "Migration plan", "status": "draft"}, 1),
    lambda ps: ({"customer": {"name": ps[0], "tier": "gold"}, "order_id": "A-99812"}, 1),
    lambda ps: ({"participants": [{"name": ps[0], "rsvp": "yes"}, {"name": ps[1], "rsvp": "maybe"}]}, 2),
    lambda ps: ({"booking": {"guest_name": ps[0], "nights": 3, "room_type": "double"}}, 1),
]

US_SUITE_STREETS = ["Oak Street", "Market St", "Pearl Street", "Walnut Ave", "Broadway", "Main Street", "Elm St"]
UK_LINES = [("High Street", "Oxford", "OX1 4AP"), ("Queen Street", "Cardiff", "CF10 2BU"),
            ("Church Road", "Bristol", "BS1 5TR"), ("Station Road", "Cambridge", "CB1 2JW"),
            ("Victoria Road", "Glasgow", "G42 7AA")]
DE_LINES = [("Musterweg", "10115 Berlin"), ("Lindenstraße", "80331 München"), ("Goethestraße", "20095 Hamburg"),
            ("Bahnhofstraße", "50667 Köln"), ("Schillerplatz", "70173 Stuttgart")]
FR_LINES = [("rue de la Paix", "75002 Paris"), ("avenue Victor Hugo", "69002 Lyon"),
            ("boulevard Haussmann", "75009 Paris"), ("rue Sainte-Catherine", "33000 Bordeaux"),
            ("place du Capitole", "31000 Toulouse")]
ES_LINES = [("C/ Mayor", "28013 Madrid"), ("Calle de Alcalá", "28014 Madrid"), ("Avda. Diagonal", "08018 Barcelona"),
            ("C/ Colón", "46004 Valencia"), ("Calle Larios", "29005 Málaga")]
NL_LINES = [("Prinsengracht", "1016 GV Amsterdam"), ("Oudegracht", "3511 AZ Utrecht"),
            ("Coolsingel", "3011 AD Rotterdam"), ("Lange Voorhout", "2514 EA Den Haag")]
CA_LINES = [("King St W", "Toronto, ON M5H 1K4"), ("W Georgia St", "Vancouver, BC V6E 3P3"),
            ("Queen St", "Ottawa, ON K1P 1J9"), ("Jasper Ave", "Edmonton, AB T5J 3N4")]
AU_LINES = [("Pitt Street", "Sydney NSW 2000"), ("Collins Street", "Melbourne VIC 3000"),
            ("Queen Street", "Brisbane QLD 4000"), ("Hay Street", "Perth WA 6000")]
IE_LINES = [("Grafton Street", "Dublin 2", "D02"), ("Shop Street", "Galway", "H91"),
            ("Patrick Street", "Cork", "T12"), ("O'Connell Street", "Limerick", "V94")]


def ho_address(rng):
    k = rng.randrange(9)
    n = rng.randint(1, 480)
    if k == 0:
        c = rng.choice(US_CITIES)
        unit = rng.choice([f"Suite {rng.randint(100, 950)}", f"Ste {rng.randint(100, 950)}",
                           f"Unit {rng.randint(1, 30)}{rng.choice('AB')}", f"#{rng.randint(2, 60)}"])
        return f"{rng.randint(100, 4999)} {rng.choice(US_SUITE_STREETS)} {unit}, {c[0]}, {c[1]} {c[2]}"
    if k == 1:
        s, city, pc = rng.choice(UK_LINES)
        return f"{n} {s}\n{city}\n{pc}"
    if k == 2:
        s, rest = rng.choice(DE_LINES)
        return f"{s} {rng.randint(1, 90)}\n{rest}" if rng.random() < 0.6 else f"{s} {rng.randint(1, 90)}, {rest}"
    if k == 3:
        s, rest = rng.choice(FR_LINES)
        return f"{rng.randint(1, 90)} {s}, {rest}"
    if k == 4:
        s, rest = rng.choice(ES_LINES)
        return f"{s} {rng.randint(1, 90)}, {rng.randint(1, 8)}º {rng.choice('ABCD')}, {rest}"
    if k == 5:
        s, rest = rng.choice(NL_LINES)
        num = f"{n}" if rng.random() < 0.5 else f"{n}-{n + 4}"
        return f"{s} {num}, {rest}"
    if k == 6:
        s, rest = rng.choice(CA_LINES)
        return f"{rng.randint(10, 1500)} {s}, {rest}"
    if k == 7:
        s, rest = rng.choice(AU_LINES)
        pre = rng.choice([f"Level {rng.randint(1, 40)}, ", f"Unit {rng.randint(1, 20)}, ", ""])
        return f"{pre}{rng.randint(1, 300)} {s}, {rest}"
    s, city, key = rng.choice(IE_LINES)
    code = "".join(rng.choice("ACDEFHKNPRTVWXY0123456789") for _ in range(4))
    return f"{rng.randint(1, 120)} {s}, {city}, {key} {code}"


HO_ADDR_TEXT = [
    "Can you change the delivery address to {a}?",
    "I live at {a}.",
    "Ship the replacement to my office: {a}",
    "Please update my address on file to\n{a}\nThanks!",
    "the package should go to {a} not the old place",
    "Pickup location: {a}",
    "Return address: {a}",
    "Our studio is at {a}, ring the bell marked reception.",
    "Meet me at {a} at 10.",
    "Invoice to:\nAccounts\n{a}",
]
HO_ADDR_KEYS = ["address", "ship_to", "delivery_address", "location", "addr", "street_address"]

TEAMS = ["Customer Success", "Accounts Payable", "Platform", "Legal", "Tier 2 Support", "Product Marketing",
         "Human Resources", "Site Reliability", "Data Engineering", "Facilities", "Procurement",
         "Security Operations", "Growth", "Billing", "Field Sales", "Developer Relations", "Quality Assurance",
         "Internal Audit", "Talent Acquisition", "IT Helpdesk", "Payroll", "Brand Design"]
COMPANIES = ["Northwind Traders Ltd", "Contoso Ltd", "Acme Corp", "Globex Corporation", "Initech",
             "Fabrikam Inc.", "Wayne Enterprises", "Stark Industries", "Umbrella Logistics GmbH",
             "Blue Harbor Partners LLC", "Tailspin Toys", "Litware Inc.", "Adventure Works Cycles"]
SERVICES = ["Datadog", "Google Calendar", "PagerDuty", "Stripe", "GitHub Actions", "Salesforce", "Jira",
            "Slack", "Zendesk", "Apple Pay", "AWS Health", "Cloudflare", "Grafana", "Sentry", "New Relic",
            "Outlook", "Shopify", "FedEx Tracking", "Google Maps", "the Nest thermostat"]
NAMED_THINGS = ["Apollo Migration", "Quarterly Revenue Dashboard", "Golden Retriever", "Blue Ocean Strategy",
                "Red Velvet Cake", "Sunset Boulevard", "Silver Plan", "Night Owl Theme", "Lake Tahoe Cabin",
                "Project Phoenix", "Customer Churn Model", "Border Collie", "Beef Wellington", "Ocean View Suite",
                "Morning Jazz", "Deep Focus", "Solarized Dark", "Annual Report 2025", "Spring Sale Banner",
                "Grand Canyon Tour", "Harvest Moon Festival", "Iron Man Suit", "Green Valley Farm",
                "Summer Internship Program", "Black Forest Gateau", "Rocky Mountain Trail"]
CITIES2 = ["Eugene", "Carson City", "Alexandria", "Augusta", "Marion", "Beaumont", "Lafayette", "Elizabeth",
           "Chester", "Douglas", "Hamilton", "Kingston", "Regina", "Adelaide", "Darwin", "Nelson", "Sofia",
           "Valletta", "Tallinn", "Ljubljana", "Bergen", "Galway", "Cusco", "Hanoi", "Marrakesh", "Santa Fe",
           "St. Petersburg", "San Sebastián", "Victoria Falls", "Saint-Malo"]
MEALS = ["Sunday brunch", "Friday lunch", "a team dinner", "Saturday breakfast", "the holiday party"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next Tuesday", "tomorrow"]
TIMES = ["9:30", "11:00", "2pm", "14:45", "4:15 pm", "07:45"]

HO_PREC_TEXT = [
    "Schedule a call with {team} for {day} at {time}.",
    "Forward this to {team}.",
    "Loop in the {team} team on the outage thread.",
    "Book a table for {meal} at {time}.",
    "cc {team} on the vendor contract.",
    "The invoice should be addressed to {company}.",
    "Escalate to Tier 2 Support and mark it urgent.",
    "{service} reported a spike in 5xx errors at 03:12 UTC.",
    "{service} said the room is booked.",
    "Send the weekly digest to {team}.",
    "Assign the ticket to the {team} queue.",
    "Set up a sync between {team} and {team2} on {day}.",
    "Reply to {team}'s last message with the updated numbers.",
    "{service} said the job finished at {time}.",
    "Ask {team} about the holiday calendar.",
    "Dear {team} team,\nplease find the Q3 figures attached.",
    "Best regards,\nThe {company} Support Team",
    "Thanks,\n{team}",
    "Schedule a demo with {company} for {day}.",
    "Open a ticket with {company} support about the broken SSO.",
    "{company} reported record revenue in Q2.",
    "Move the {thing} epic to the next sprint.",
    "Order the Model 3, 2024 Edition in Midnight Silver.",
    "Reserve Room 4, 2026 budget review at {time}.",
    "The price is 1,299.00 EUR, order number 2026-004417.",
    "Flight LH 2471 departs {city} at {time}.",
    "Upgrade the Silver Plan to Gold for the {city} office.",
    "Check availability of the {thing} for {day}.",
    "Find parking near Sunset Boulevard on {day}.",
    "Hand this over to the Night Shift.",
    "Invite the {team} squad to the retro on {day}.",
    "Customer Success will follow up by {day}.",
    "What's the forecast for {city} on {day}?",
    "Book two tickets to {city} leaving {day} morning.",
    "Remind me to water the plants at {time}.",
    "Bump the version from 4.2.0 to 4.3.0-rc.1 and tag the release.",
    "Add the {thing} playlist to my queue.",
    "Notify {team} that release 2026.03 is live.",
]


def ho_prec_args(rng):
    k = rng.randrange(12)
    thing, team, city = rng.choice(NAMED_THINGS), rng.choice(TEAMS), rng.choice(CITIES2 + PLACES)
    if k == 0:
        return {"name": thing, "owner_team": team, "due": f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)}"}
    if k == 1:
        return {"destination": city, "flight": f"{rng.choice(['BA', 'LH', 'AF', 'UA', 'QF'])} {rng.randint(10, 2999)}",
                "departure": f"2026-05-0{rng.randint(1, 9)}T{rng.randint(6, 21):02d}:40", "class": "economy"}
    if k == 2:
        return {"order_number": f"PO-2026-{rng.randint(100, 99999):05d}", "sku": "Model 3, 2024 Edition",
                "price": f"{rng.randint(1, 9)},{rng.randint(100, 999)}.00", "currency": "EUR"}
    if k == 3:
        return {"room": "Room 4, 2026 budget", "start": rng.choice(TIMES), "end": "11:30"}
    if k == 4:
        return {"to": team, "channel": "email", "body": "Please review the attached draft."}
    if k == 5:
        return {"assignee": rng.choice(["Tier 2 Support", "Billing queue", "Platform on-call", team]),
                "ticket_id": f"SUP-{rng.randint(1000, 9999)}", "priority": "normal"}
    if k == 6:
        return {"name": thing, "category": rng.choice(["dog breeds", "books", "recipes", "themes", "places"])}
    if k == 7:
        return {"package": "serde", "version": f"1.0.{rng.randint(100, 220)}", "name": f"Release {rng.randint(1, 9)}.{rng.randint(0, 20)}.0"}
    if k == 8:
        return {"title": rng.choice(MEALS).capitalize(), "date": f"2026-03-{rng.randint(10, 28)}", "time": rng.choice(TIMES)}
    if k == 9:
        return {"location": city, "units": "metric", "days": rng.randint(1, 7)}
    if k == 10:
        return {"owner": f"{team} team", "name": thing, "visibility": "internal"}
    return {"destination": city, "name": thing, "guests": rng.randint(1, 6), "check_in": "2026-08-14"}


def heldout_sets(rng):
    rec = []

    def add(lst, item):
        lst.append({**item, "set": "heldout"})

    for i in range(150):
        if rng.random() < 0.65:
            t, k = rng.choice(HO_PERSON_TEXT)
            ps = persons(rng, 3)
            if "{f}" in t:
                f = ps[0].split(" ")[0]
                add(rec, {"kind": "text", "text": t.format(f=f), "entities": [{"type": "PERSON", "value": f}]})
                continue
            t = t.format(p=ps[0], p2=ps[1], p3=ps[2])
            add(rec, {"kind": "text", "text": t, "entities": [{"type": "PERSON", "value": p} for p in ps[:k]]})
        else:
            ps = persons(rng, 3)
            args, k = rng.choice(HO_PERSON_ARGS)(ps)
            add(rec, {"kind": "args", "args": args, "entities": [{"type": "PERSON", "value": p} for p in ps[:k]]})
    for i in range(90):
        a = ho_address(rng)
        if rng.random() < 0.6:
            t = rng.choice(HO_ADDR_TEXT).format(a=a)
            add(rec, {"kind": "text", "text": t, "entities": [{"type": "ADDRESS", "value": a}]})
        else:
            args = {rng.choice(HO_ADDR_KEYS): a, **rng.choice([{"carrier": "DHL"}, {"notes": "leave at the door"}])}
            add(rec, {"kind": "args", "args": args, "entities": [{"type": "ADDRESS", "value": a}]})
    prec = []
    for i in range(130):
        t = rng.choice(HO_PREC_TEXT).format(team=rng.choice(TEAMS), team2=rng.choice(TEAMS),
                                           company=rng.choice(COMPANIES), service=rng.choice(SERVICES),
                                           meal=rng.choice(MEALS), day=rng.choice(DAYS), time=rng.choice(TIMES),
                                           thing=rng.choice(NAMED_THINGS), city=rng.choice(CITIES2))
        add(prec, {"kind": "text", "text": t, "entities": []})
    for i in range(70):
        add(prec, {"kind": "args", "args": ho_prec_args(rng), "entities": []})
    return rec, prec


def main():
    rng = random.Random(SEED)
    names = lexicon("first_names.txt") | lexicon("surnames.txt")
    clash = sorted(w for w in FIRST + LAST if fold(w) in names)
    assert not clash, f"names the detector's lexicon holds: {clash}"
    OUT.mkdir(parents=True, exist_ok=True)
    recall, precision = recall_set(rng), precision_set(rng)
    ho_recall, ho_precision = heldout_sets(random.Random(SEED + 1))
    for fname, items in [("recall.jsonl", recall + ho_recall), ("precision.jsonl", precision + ho_precision)]:
        with open(OUT / fname, "w", encoding="utf-8") as f:
            for n, it in enumerate(items):
                f.write(json.dumps({"id": n, **it}, ensure_ascii=False) + "\n")
        print(f"{fname}: {len(items)} items")


if __name__ == "__main__":
    main()
