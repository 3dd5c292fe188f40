#!/usr/bin/env python3
"""Builds src/redact/data/places.txt.gz, the gazetteer the person-name
detector consults so that places ("San Francisco", "Paris Charles de
Gaulle", "Washington D.C.") are not taken for people.

  python3 scripts/make_places.py world-cities.csv

Source: `data/world-cities.csv` of https://github.com/datasets/world-cities
(cities above 15,000 inhabitants with their country and first-level
subdivision, extracted from GeoNames, https://www.geonames.org/). The
datapackage is under the Open Data Commons PDDL; the GeoNames data it comes
from is under Creative Commons Attribution 4.0: credit GeoNames. Added by
hand below: airports, landmarks, regions and common abbreviations that the
city list lacks.

One place per line, as written (accents kept), sorted, deduplicated; names
of one or two letters are left out.
"""
import csv
import gzip
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "redact" / "data" / "places.txt.gz"

EXTRA = """Washington D.C.|Washington DC|D.C.|New York City|NYC|L.A.|St. Louis|St. Petersburg|St. Paul|
Fort Lauderdale|Silicon Valley|Bay Area|Lake Tahoe|Mount Everest|Mount Fuji|Mount Kilimanjaro|Grand Canyon|
Golden Gate Bridge|Golden Gate Park|Central Park|Times Square|Niagara Falls|Yellowstone|Yosemite|
Death Valley|Napa Valley|Big Sur|Cape Cod|Martha's Vineyard|Long Island|Staten Island|Manhattan|Brooklyn|
Queens|The Bronx|Hollywood|Beverly Hills|Venice Beach|Miami Beach|Key West|Pearl Harbor|Eiffel Tower|
Louvre|Notre-Dame|Champs-Élysées|Montmartre|Big Ben|Tower Bridge|Buckingham Palace|Hyde Park|
Colosseum|Vatican City|Sagrada Família|Alhambra|Acropolis|Brandenburg Gate|Red Square|Great Wall|
Forbidden City|Taj Mahal|Machu Picchu|Sydney Opera House|Table Mountain|Christ the Redeemer|
Charles de Gaulle|Paris Charles de Gaulle|Orly|Heathrow|London Heathrow|Gatwick|London Gatwick|Stansted|
Luton|John F. Kennedy|JFK|LaGuardia|Newark Liberty|O'Hare|Chicago O'Hare|Midway|Dulles|Reagan National|
Logan|Hartsfield-Jackson|SeaTac|Sea-Tac|Schiphol|Amsterdam Schiphol|Frankfurt Main|Munich Airport|
Barajas|Madrid Barajas|El Prat|Fiumicino|Malpensa|Haneda|Tokyo Haneda|Narita|Changi|Incheon|
Kingsford Smith|Sydney Kingsford Smith|Pearson|Toronto Pearson|Dubai International|Hamad|
Silicon Alley|Wall Street|Fifth Avenue|Broadway|Sunset Boulevard|Route 66|
Bavaria|Tuscany|Provence|Catalonia|Andalusia|Lombardy|Normandy|Brittany|Scandinavia|Patagonia|
Siberia|Midwest|New England|Pacific Northwest|West Coast|East Coast|Middle East|Southeast Asia|
European Union|United States|United Kingdom|Great Britain|England|Scotland|Wales|Northern Ireland""".replace("\n", "")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    places = set()
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for k in ("name", "country", "subcountry"):
                v = (row.get(k) or "").strip()
                if len(v) >= 3 and v != "N/A":
                    places.add(v)
    places.update(p.strip() for p in EXTRA.split("|") if p.strip())
    text = "".join(p + "\n" for p in sorted(places))
    OUT.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    print(f"{len(places)} places -> {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
