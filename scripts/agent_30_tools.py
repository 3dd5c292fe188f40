#!/usr/bin/env python3
"""A tool-heavy agent workload for measuring prompt pruning (issue 12): one
travel-operations agent whose requests offer a pool of 30 tools (all of them
in most calls, a random 24 of them in the rest: the same schemas, different
subsets), a fixed ~900-character system prompt, one user request and the
LLM's tool call as the answer. Writes OpenAI chat request/response records
and synth-style ground-truth labels (line, index, workload).

    python3 scripts/agent_30_tools.py OUT.jsonl [--calls 300] [--seed 1]
"""
import argparse
import json
import random

CITIES = ["Lisbon", "Oslo", "Rome", "Quito", "Lima", "Paris", "Porto", "Kyiv", "Osaka", "Denver"]
AIRLINES = ["TAP", "SAS", "ITA", "LATAM", "KLM", "LOT"]
CLASSES = ["economy", "premium_economy", "business", "first"]

SYSTEM = (
    "You are the operations agent of Northwind Travel. You act only through the functions "
    "you are given: never invent bookings, prices or availability. Use the customer's "
    "reference when one is given. Dates are ISO 8601 (YYYY-MM-DD). Amounts are in the "
    "customer's currency. When a request needs a function, call exactly one function with "
    "all required arguments and only arguments the function defines. Be precise with city "
    "names, airline codes and cabin classes; prefer the customer's stated preferences. "
    "Policies: cancellations within 24 hours of booking are free; changes to business and "
    "first class tickets keep the fare class; loyalty points are credited after travel. "
    "Escalate to a human only through the escalate_case function."
)


def prop(t, desc, **kw):
    d = {"type": t, "description": desc}
    d.update(kw)
    return d


def tools():
    city = prop("string", "City name, as the customer wrote it")
    date = prop("string", "Date in YYYY-MM-DD")
    ref = prop("string", "Booking reference, six characters")
    cabin = prop("string", "Cabin class", enum=CLASSES)
    specs = [
        ("search_flights", "Search flights between two cities on a date", {"origin": city, "destination": city, "date": date, "cabin": cabin}, ["origin", "destination", "date"]),
        ("book_flight", "Book a flight found by search_flights", {"flight_id": prop("string", "Flight id from a search"), "passengers": prop("integer", "Number of passengers", minimum=1), "cabin": cabin}, ["flight_id", "passengers"]),
        ("cancel_booking", "Cancel a booking", {"reference": ref, "reason": prop("string", "Why the customer cancels")}, ["reference"]),
        ("change_flight_date", "Move a booked flight to another date", {"reference": ref, "new_date": date}, ["reference", "new_date"]),
        ("search_hotels", "Search hotels in a city for a stay", {"city": city, "check_in": date, "nights": prop("integer", "Nights", minimum=1), "max_price": prop("number", "Highest nightly price")}, ["city", "check_in", "nights"]),
        ("book_hotel", "Book a hotel room", {"hotel_id": prop("string", "Hotel id from a search"), "rooms": prop("integer", "Rooms", minimum=1)}, ["hotel_id", "rooms"]),
        ("cancel_hotel", "Cancel a hotel booking", {"reference": ref}, ["reference"]),
        ("rent_car", "Rent a car in a city", {"city": city, "pick_up": date, "days": prop("integer", "Rental days", minimum=1), "category": prop("string", "Car category", enum=["mini", "compact", "suv", "van"])}, ["city", "pick_up", "days"]),
        ("get_booking", "Look up a booking by reference", {"reference": ref}, ["reference"]),
        ("list_bookings", "List a customer's bookings", {"customer_id": prop("string", "Customer id"), "upcoming_only": prop("boolean", "Only future trips")}, ["customer_id"]),
        ("add_baggage", "Add checked bags to a booking", {"reference": ref, "bags": prop("integer", "Extra bags", minimum=1, maximum=3)}, ["reference", "bags"]),
        ("select_seat", "Choose a seat on a booked flight", {"reference": ref, "seat": prop("string", "Seat such as 14C")}, ["reference", "seat"]),
        ("request_refund", "Request a refund for a cancelled booking", {"reference": ref, "amount": prop("number", "Amount to refund")}, ["reference"]),
        ("get_flight_status", "Status of a flight", {"flight_number": prop("string", "Flight number such as TP123"), "date": date}, ["flight_number", "date"]),
        ("add_loyalty_number", "Attach a loyalty number to a booking", {"reference": ref, "airline": prop("string", "Airline code", enum=AIRLINES), "number": prop("string", "Loyalty number")}, ["reference", "airline", "number"]),
        ("get_loyalty_balance", "Points balance of a loyalty account", {"airline": prop("string", "Airline code", enum=AIRLINES), "number": prop("string", "Loyalty number")}, ["airline", "number"]),
        ("book_transfer", "Book an airport transfer", {"city": city, "date": date, "passengers": prop("integer", "Passengers", minimum=1)}, ["city", "date"]),
        ("get_visa_requirements", "Visa rules for a trip", {"nationality": prop("string", "Passport country"), "destination": city}, ["nationality", "destination"]),
        ("get_weather", "Weather forecast for a city", {"city": city, "date": date}, ["city"]),
        ("convert_currency", "Convert an amount between currencies", {"amount": prop("number", "Amount"), "from_currency": prop("string", "ISO code"), "to_currency": prop("string", "ISO code")}, ["amount", "from_currency", "to_currency"]),
        ("add_travel_insurance", "Add insurance to a booking", {"reference": ref, "plan": prop("string", "Plan", enum=["basic", "plus", "premium"])}, ["reference", "plan"]),
        ("send_itinerary", "Email the itinerary of a booking", {"reference": ref, "email": prop("string", "Email address")}, ["reference"]),
        ("update_passenger_name", "Correct a passenger's name", {"reference": ref, "first_name": prop("string", "First name"), "last_name": prop("string", "Last name")}, ["reference", "last_name"]),
        ("request_special_meal", "Order a special meal", {"reference": ref, "meal": prop("string", "Meal code", enum=["VGML", "KSML", "GFML", "DBML"])}, ["reference", "meal"]),
        ("request_wheelchair", "Ask for wheelchair assistance", {"reference": ref}, ["reference"]),
        ("check_in", "Check a booking in online", {"reference": ref, "last_name": prop("string", "Passenger last name")}, ["reference", "last_name"]),
        ("get_boarding_pass", "Send the boarding pass", {"reference": ref}, ["reference"]),
        ("report_lost_baggage", "Open a lost baggage report", {"reference": ref, "bag_tag": prop("string", "Bag tag number")}, ["reference", "bag_tag"]),
        ("get_lounge_access", "Lounge access for a flight", {"reference": ref, "airport": prop("string", "Airport code")}, ["reference", "airport"]),
        ("escalate_case", "Hand the case to a human agent", {"summary": prop("string", "One-sentence summary"), "priority": prop("string", "Priority", enum=["low", "normal", "high"])}, ["summary"]),
    ]
    return [{"type": "function", "function": {"name": n, "description": d,
             "parameters": {"type": "object", "properties": p, "required": r}}} for n, d, p, r in specs]


def ref(rng):
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))


def date(rng):
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def request(rng):
    """A user request and the call that answers it."""
    c1, c2 = rng.sample(CITIES, 2)
    r, d = ref(rng), date(rng)
    options = [
        (f"Find me a flight from {c1} to {c2} on {d}.", "search_flights", {"origin": c1, "destination": c2, "date": d}),
        (f"Please cancel booking {r}.", "cancel_booking", {"reference": r}),
        (f"Can you move {r} to {d}?", "change_flight_date", {"reference": r, "new_date": d}),
        (f"I need a hotel in {c1} from {d} for {rng.randint(2, 6)} nights.", "search_hotels", None),
        (f"What's the status of booking {r}?", "get_booking", {"reference": r}),
        (f"Add {rng.randint(1, 3)} checked bags to {r}.", "add_baggage", None),
        (f"Weather in {c2} on {d}?", "get_weather", {"city": c2, "date": d}),
        (f"Send the boarding pass for {r}.", "get_boarding_pass", {"reference": r}),
        (f"Check in {r}, last name Silva.", "check_in", {"reference": r, "last_name": "Silva"}),
        (f"Rent a compact car in {c1} from {d} for {rng.randint(2, 9)} days.", "rent_car", None),
    ]
    text, name, args = rng.choice(options)
    if args is None:
        nums = [int(w) for w in text.replace(".", " ").split() if w.isdigit()]
        if name == "search_hotels":
            args = {"city": c1, "check_in": d, "nights": nums[-1]}
        elif name == "add_baggage":
            args = {"reference": r, "bags": nums[0]}
        else:
            args = {"city": c1, "pick_up": d, "days": nums[-1], "category": "compact"}
    return text, name, args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pool = tools()
    labels = a.out.rsplit(".jsonl", 1)[0] + ".labels.jsonl"
    with open(a.out, "w") as f, open(labels, "w") as g:
        for i in range(a.calls):
            text, name, args = request(rng)
            offered = pool if rng.random() < 0.7 else [t for t in pool if t["function"]["name"] == name] + rng.sample([t for t in pool if t["function"]["name"] != name], 23)
            rec = {"request": {"model": "gpt-4o", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}], "tools": offered},
                   "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
                       {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]},
                       "finish_reason": "tool_calls"}]}}
            f.write(json.dumps(rec) + "\n")
            g.write(json.dumps({"line": i + 1, "index": 0, "workload": "travel_ops", "format": "openai_chat"}) + "\n")


if __name__ == "__main__":
    main()
