"""A seeded template grammar of simple English sentences (offline text for the mini_en corpus).

Sentences are upper case, unpunctuated, 3-10 words, built from a few hundred words: commands
("PUT THE RED BOX ON THE TABLE"), counts ("SEVEN BLUE DOGS RUN QUICKLY"), statements, questions
and times. The same seed always gives the same sentences in the same order.
"""

from __future__ import annotations

import random

MIN_WORDS, MAX_WORDS = 3, 10

COLOURS = "RED BLUE GREEN YELLOW BLACK WHITE ORANGE PURPLE PINK BROWN GREY GOLDEN SILVER".split()
SIZES = "BIG SMALL LITTLE LARGE TINY HUGE TALL SHORT LONG ROUND".split()
QUALITIES = "OLD NEW HEAVY LIGHT SOFT HARD WARM COLD CLEAN DIRTY EMPTY FULL SHINY".split()
MOODS = "HAPPY SAD HUNGRY SLEEPY ANGRY CALM BUSY TIRED FRIENDLY QUIET LOUD BRAVE".split()
# singular -> plural
OBJECTS = {
    "BOX": "BOXES", "CUP": "CUPS", "BOOK": "BOOKS", "BALL": "BALLS", "CHAIR": "CHAIRS",
    "LAMP": "LAMPS", "BOTTLE": "BOTTLES", "PLATE": "PLATES", "SPOON": "SPOONS", "KEY": "KEYS",
    "HAT": "HATS", "SHOE": "SHOES", "COAT": "COATS", "BAG": "BAGS", "PEN": "PENS",
    "PENCIL": "PENCILS", "CLOCK": "CLOCKS", "PHONE": "PHONES", "BLANKET": "BLANKETS",
    "PILLOW": "PILLOWS", "BASKET": "BASKETS", "CANDLE": "CANDLES", "MIRROR": "MIRRORS",
    "TOWEL": "TOWELS", "BUCKET": "BUCKETS", "HAMMER": "HAMMERS", "ROPE": "ROPES",
    "APPLE": "APPLES", "ORANGE": "ORANGES", "BANANA": "BANANAS", "CAKE": "CAKES",
    "LETTER": "LETTERS", "PICTURE": "PICTURES", "FLOWER": "FLOWERS", "STONE": "STONES",
    "GLASS": "GLASSES", "BRUSH": "BRUSHES", "WATCH": "WATCHES", "TOY": "TOYS", "RING": "RINGS",
}  # fmt: skip
ANIMALS = {
    "DOG": "DOGS", "CAT": "CATS", "BIRD": "BIRDS", "HORSE": "HORSES", "COW": "COWS",
    "FISH": "FISH", "RABBIT": "RABBITS", "DUCK": "DUCKS", "GOAT": "GOATS", "MOUSE": "MICE",
    "FOX": "FOXES", "BEAR": "BEARS", "LION": "LIONS", "TIGER": "TIGERS", "FROG": "FROGS",
    "SHEEP": "SHEEP", "PIG": "PIGS", "MONKEY": "MONKEYS", "WOLF": "WOLVES", "OWL": "OWLS",
}  # fmt: skip
PLACES = ("TABLE SHELF FLOOR BED DESK SOFA BENCH ROOF WINDOW DOOR STAIRS CUPBOARD FENCE "
          "TRUCK CAR BOAT WALL GARDEN KITCHEN GARAGE").split()  # fmt: skip
DESTINATIONS = ("PARK MARKET SCHOOL STATION BEACH LIBRARY OFFICE HOSPITAL RIVER CITY "
                "VILLAGE FARM MUSEUM HARBOUR AIRPORT FOREST MOUNTAIN").split()  # fmt: skip
PREPOSITIONS = "ON UNDER NEAR BEHIND BESIDE ABOVE BELOW INSIDE".split()
NAMES = ("JOHN MARY PETER ANNA DAVID SARAH JAMES LUCY PAUL EMMA MARK ALICE TOM KATE "
         "GEORGE HELEN SAM NORA FRANK RUTH").split()  # fmt: skip
PUT_VERBS = "PUT PLACE MOVE SET LEAVE DROP HIDE KEEP".split()
TAKE_VERBS = "TAKE BRING FIND OPEN CLOSE CLEAN PAINT WASH FETCH CARRY LIFT PUSH PULL".split()
# plural/base form -> third person singular
ACTIONS = {
    "RUN": "RUNS", "JUMP": "JUMPS", "SING": "SINGS", "SLEEP": "SLEEPS", "WALK": "WALKS",
    "SWIM": "SWIMS", "PLAY": "PLAYS", "DANCE": "DANCES", "REST": "RESTS", "WAIT": "WAITS",
    "EAT": "EATS", "CLIMB": "CLIMBS", "HIDE": "HIDES", "SIT": "SITS", "WORK": "WORKS",
}  # fmt: skip
ADVERBS = ("QUICKLY SLOWLY QUIETLY LOUDLY HAPPILY CAREFULLY TOGETHER OUTSIDE AGAIN "
           "EVERYWHERE TODAY TONIGHT").split()  # fmt: skip
BUY_VERBS = {"BUY": "BUYS", "SELL": "SELLS", "WANT": "WANTS", "NEED": "NEEDS", "LIKE": "LIKES",
             "HAVE": "HAS", "SEE": "SEES", "DRAW": "DRAWS"}  # fmt: skip
GO_VERBS = {"GO": "GOES", "DRIVE": "DRIVES", "WALK": "WALKS", "RIDE": "RIDES", "TRAVEL": "TRAVELS"}
DAYS = "MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY SATURDAY SUNDAY".split()
TIMES = ["TODAY", "TOMORROW", "YESTERDAY", "TONIGHT", "THIS MORNING", "THIS EVENING",
         "NEXT WEEK", "LAST NIGHT"] + [f"ON {d}" for d in DAYS]  # fmt: skip
UNITS = "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE".split()
TEENS = "TEN ELEVEN TWELVE THIRTEEN FOURTEEN FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN".split()
TENS = "TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()


def number_words(n: int) -> str:
    """1..99 in words: 7 -> "SEVEN", 42 -> "FORTY TWO"."""
    if not 1 <= n <= 99:
        raise ValueError(f"number_words supports 1..99, got {n}")
    if n < 10:
        return UNITS[n - 1]
    if n < 20:
        return TEENS[n - 10]
    tens, unit = divmod(n, 10)
    return TENS[tens - 2] + ("" if unit == 0 else " " + UNITS[unit - 1])


def _opt(r: random.Random, words: list[str], p: float) -> str:
    return r.choice(words) if r.random() < p else ""


def _count(r: random.Random) -> str:
    # small counts are the common case, like real speech
    return number_words(r.randint(2, 12) if r.random() < 0.7 else r.randint(13, 99))


def _noun_phrase(r: random.Random, nouns: list[str]) -> str:
    return " ".join(
        w for w in ("THE", _opt(r, SIZES + QUALITIES, 0.4), _opt(r, COLOURS, 0.6), r.choice(nouns))
        if w
    )  # fmt: skip


def _command(r: random.Random) -> str:
    obj = _noun_phrase(r, list(OBJECTS))
    return f"{r.choice(PUT_VERBS)} {obj} {r.choice(PREPOSITIONS)} THE {r.choice(PLACES)}"


def _take(r: random.Random) -> str:
    please = "PLEASE " if r.random() < 0.3 else ""
    return f"{please}{r.choice(TAKE_VERBS)} {_noun_phrase(r, list(OBJECTS))} {_opt(r, TIMES, 0.3)}"


def _animals(r: random.Random) -> str:
    colour = _opt(r, COLOURS + SIZES, 0.6)
    return f"{_count(r)} {colour} {r.choice(list(ANIMALS.values()))} {r.choice(list(ACTIONS))} {r.choice(ADVERBS)}"


def _animal_action(r: random.Random) -> str:
    name = _noun_phrase(r, list(ANIMALS))
    return (
        f"{name} {r.choice(list(ACTIONS.values()))} {r.choice(PREPOSITIONS)} THE {r.choice(PLACES)}"
    )


def _person_buys(r: random.Random) -> str:
    verb = r.choice(list(BUY_VERBS.values()))
    if r.random() < 0.5:
        thing = f"{_count(r)} {_opt(r, COLOURS, 0.5)} {r.choice(list(OBJECTS.values()))}"
    else:
        thing = _noun_phrase(r, list(OBJECTS))
    return f"{r.choice(NAMES)} {verb} {thing} {_opt(r, TIMES, 0.4)}"


def _travel(r: random.Random) -> str:
    if r.random() < 0.5:
        who, verb = f"{r.choice(NAMES)} AND {r.choice(NAMES)}", r.choice(list(GO_VERBS))
    else:
        who, verb = r.choice(NAMES), r.choice(list(GO_VERBS.values()))
    return f"{who} {verb} TO THE {r.choice(DESTINATIONS)} {r.choice(TIMES)}"


def _state(r: random.Random) -> str:
    if r.random() < 0.5:
        return f"THE {_opt(r, COLOURS, 0.5)} {r.choice(list(ANIMALS))} IS {r.choice(MOODS)}"
    return f"THE {r.choice(list(OBJECTS.values()))} ARE {r.choice(QUALITIES + COLOURS)}"


def _question(r: random.Random) -> str:
    kind = r.randrange(3)
    if kind == 0:
        return f"WHERE IS {_noun_phrase(r, list(OBJECTS) + list(ANIMALS))}"
    if kind == 1:
        return f"HOW MANY {r.choice(list(OBJECTS.values()))} DOES {r.choice(NAMES)} {r.choice(list(BUY_VERBS))}"
    return f"DID {r.choice(NAMES)} SEE THE {r.choice(list(ANIMALS))} {_opt(r, TIMES, 0.5)}"


def _clock(r: random.Random) -> str:
    minutes = _opt(r, ["FIFTEEN", "THIRTY", "FORTY FIVE"], 0.5)
    return f"PLEASE CALL {r.choice(NAMES)} AT {number_words(r.randint(1, 12))} {minutes} {r.choice(TIMES)}"


TEMPLATES = (_command, _take, _animals, _animal_action, _person_buys, _travel, _state, _question,
             _clock)  # fmt: skip


def vocabulary() -> set[str]:
    """Every word the grammar can produce."""
    words: set[str] = set()
    for group in (COLOURS, SIZES, QUALITIES, MOODS, PLACES, DESTINATIONS, PREPOSITIONS, NAMES,
                  PUT_VERBS, TAKE_VERBS, ADVERBS, DAYS, UNITS, TEENS, TENS, TIMES):  # fmt: skip
        words.update(w for item in group for w in item.split())
    for mapping in (OBJECTS, ANIMALS, ACTIONS, BUY_VERBS, GO_VERBS):
        words.update(mapping)
        words.update(mapping.values())
    words.update("THE PLEASE AND TO IS ARE WHERE HOW MANY DOES DID SEE CALL AT".split())
    return words


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences (3-10 words, upper case), reproducible from `seed`."""
    r = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"the grammar cannot produce {n} distinct sentences")
        sentence = " ".join(r.choice(TEMPLATES)(r).split())
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out
