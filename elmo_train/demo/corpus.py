"""The built-in demo corpus: generated English-like sentences in which ambiguous words keep
their senses apart.

Every ambiguous word has two senses, and each sense has its own context vocabulary (who acts on
it, what is done to it, what it does, where it is), so a biLM's contextual layers can tell the
senses apart while its token layer, which sees only the word, cannot. Neutral filler sentences
make up the rest. The vocabulary and templates were written for
this project. Text is tokenized like the PTB (lowercase, punctuation split off), one sentence
per line.

`python -m elmo_train.demo.corpus` rewrites `data/train.txt` and `data/valid.txt`; a test
checks that the committed files are exactly what `corpus_text` generates.
"""

import functools
import random
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
SPLIT_SEEDS = {"train": 1, "valid": 2}
SPLIT_TOKENS = {"train": 200_000, "valid": 12_000}  # each split stops at the first line past it
AMBIGUOUS_SHARE = 0.6  # of sentences; the rest are filler
DEMO_CONTEXTS_PER_SENSE = 3
_DEMO_DRAWS = 100  # random fillings of a template tried per sense


@dataclass(frozen=True)
class Sense:
    """The context vocabulary of one sense; every phrase is space-separated tokens."""

    name: str
    agents: tuple[str, ...]  # who acts on the word: "the fisherman"
    actions: tuple[str, ...]  # past-tense verbs taking the word as object: "sat on"
    adjectives: tuple[str, ...]  # right before the word: "muddy"
    predicates: tuple[str, ...]  # the word as subject, past tense: "flooded after the rain"
    details: tuple[str, ...]  # participle phrases right after the word: "lined with willows"
    scenes: tuple[str, ...]  # prepositional phrases: "by the river"


def _sense(name: str, **phrases: str) -> Sense:
    return Sense(name, **{k: tuple(v.split(" | ")) for k, v in phrases.items()})


# Predicates and details start with a word of their own sense, and an adjective always comes
# right before the ambiguous word, so both neighbours of the word carry its sense.
SENSES: dict[str, tuple[Sense, Sense]] = {
    "bank": (
        _sense(
            "river",
            agents="the fisherman | a heron | the ducks | the hikers | the angler",
            actions="sat on | walked along | fished from | slid down | camped on",
            adjectives="muddy | grassy | steep | sandy | far",
            predicates="flooded after the rain | sloped down to the water | collapsed into the "
            "stream | crumbled into the river | eroded during the storm",
            details="lined with willows | overgrown with reeds | carved by the current | "
            "trampled by cattle | covered in mud",
            scenes="by the river | in the morning mist | near the old bridge | beside the reeds | "
            "at the edge of the water",
        ),
        _sense(
            "finance",
            agents="the clerk | the manager | an investor | the customer | the accountant",
            actions="phoned | borrowed money from | deposited the cash at | opened an account at | "
            "complained to",
            adjectives="national | central | local | largest | private",
            predicates="raised interest rates | approved the loan | closed the account | reported "
            "record profits | charged a high fee",
            details="owned by investors | regulated by the government | famous for low fees | "
            "listed on the stock market | based in the capital",
            scenes="in the city centre | on the high street | during the crisis | after the merger | "
            "near the stock exchange",
        ),
    ),
    "bat": (
        _sense(
            "animal",
            agents="the biologist | the cave explorer | the zookeeper | a hiker | the vet",
            actions="saw | watched | caught | observed | studied",
            adjectives="tiny | furry | sleeping | brown | nocturnal",
            predicates="flew out of the cave | hung upside down from the roof | ate insects at "
            "night | slept all day in the attic | spread its leathery wings",
            details="roosting in the cave | hanging from the rafters | hunting moths at night | "
            "nesting under the roof | covered in soft fur",
            scenes="in the dark cave | under the roof | at dusk | among the trees | near the cave "
            "entrance",
        ),
        _sense(
            "baseball",
            agents="the batter | the coach | the pitcher | the shortstop | the umpire",
            actions="swung | gripped | dropped | cracked | signed",
            adjectives="wooden | splintered | aluminum | broken | lucky",
            predicates="hit the ball over the fence | cracked in the ninth inning | leaned against "
            "the dugout wall | sent the ball into the stands | connected with a fast pitch",
            details="made of maple | signed by the whole team | used in the world series | taped at "
            "the handle | swung by the home run champion",
            scenes="at the plate | in the dugout | during the inning | before the first pitch | at "
            "the ballpark",
        ),
    ),
    "spring": (
        _sense(
            "season",
            agents="the shepherd | the birds | the farmer | the tourists | my grandmother",
            actions="waited for | loved | enjoyed | welcomed | planted seeds in",
            adjectives="sunny | late | warm | rainy | mild",
            predicates="brought warm rain | came early this year | melted the snow | filled the "
            "meadows with blossoms | followed a long winter",
            details="full of blossoms | following the long winter | bringing warm rain | filled "
            "with birdsong | lasting until june",
            scenes="after the long winter | in the countryside | in april | in the meadows | "
            "before the summer",
        ),
        _sense(
            "coil",
            agents="the mechanic | the engineer | the watchmaker | the plumber | the repairman",
            actions="replaced | compressed | stretched | oiled | tightened",
            adjectives="metal | rusty | tight | loose | coiled",
            predicates="snapped under the load | pushed the lever back | held the valve shut | "
            "bounced back into place | wound around the axle",
            details="fitted inside the clock | attached to the lever | coiled around the axle | "
            "made of hardened steel | holding the valve shut",
            scenes="inside the clock | in the mattress | under the valve | behind the lever | in "
            "the gearbox",
        ),
    ),
    "cell": (
        _sense(
            "biology",
            agents="the scientist | the student | the researchers | the pathologist | the lab "
            "technician",
            actions="examined | stained | photographed | isolated | cultured",
            adjectives="living | healthy | cancerous | nerve | single",
            predicates="divided into two | absorbed the nutrients | produced new proteins | copied "
            "its dna | released a chemical signal",
            details="stained with dye | taken from the tissue | containing a large nucleus | grown "
            "in the petri dish | infected by the virus",
            scenes="under the microscope | in the tissue sample | in the petri dish | in the blood "
            "sample | in the laboratory",
        ),
        _sense(
            "prison",
            agents="the prisoner | the guard | the warden | the inmate | the sheriff",
            actions="locked | searched | guarded | escaped from | paced around",
            adjectives="dark | cold | narrow | damp | crowded",
            predicates="held two prisoners | smelled of damp stone | stayed locked all night | "
            "housed the murderer | echoed with footsteps",
            details="fitted with iron bars | guarded by two officers | locked from the outside | "
            "reserved for dangerous inmates | lit by a bare bulb",
            scenes="in the county jail | on death row | in the prison | behind the iron bars | at "
            "the end of the corridor",
        ),
    ),
    "plant": (
        _sense(
            "botany",
            agents="the gardener | my aunt | the botanist | the florist | the little girl",
            actions="watered | repotted | pruned | fertilized | trimmed",
            adjectives="green | leafy | potted | tall | flowering",
            predicates="needed more sunlight | grew new leaves | wilted in the heat | bloomed on "
            "the windowsill | dropped its leaves",
            details="rooted in rich soil | kept on the windowsill | grown from a cutting | watered "
            "every morning | covered in green leaves",
            scenes="in the greenhouse | on the windowsill | in the garden | in a clay pot | in the "
            "rich soil",
        ),
        _sense(
            "factory",
            agents="the workers | the company | the union | the foreman | the inspectors",
            actions="built | shut down | inspected | expanded | modernized",
            adjectives="nuclear | chemical | steel | power | industrial",
            predicates="employed three hundred workers | produced cars for export | closed after "
            "the strike | polluted the air | ran three shifts a day",
            details="owned by the company | employing three hundred workers | producing cars for "
            "export | built on the industrial estate | operating around the clock",
            scenes="on the industrial estate | outside the town | near the motorway | after the "
            "strike | in the north of the country",
        ),
    ),
    "match": (
        _sense(
            "fire",
            agents="the camper | the smoker | the scout | the cook | the old sailor",
            actions="struck | lit | blew out | dropped | scraped",
            adjectives="wet | burning | unlit | dry | spent",
            predicates="flared in the dark | burned his fingers | lit the candle | went out in the "
            "wind | set the paper on fire",
            details="taken from the matchbox | dipped in wax | struck against the box | burning in "
            "the dark | soaked by the rain",
            scenes="by the campfire | near the stove | in the dark tent | beside the candle | next "
            "to the fireplace",
        ),
        _sense(
            "game",
            agents="the team | the fans | the referee | the striker | the captain",
            actions="won | attended | watched | played | refereed",
            adjectives="final | exciting | televised | friendly | important",
            predicates="ended in a draw | drew a huge crowd | went to extra time | finished three "
            "goals to one | kicked off at noon",
            details="played in the rain | watched by millions | decided by penalties | broadcast "
            "on television | postponed by the league",
            scenes="at the stadium | in the league | on saturday afternoon | in the cup final | on "
            "the football pitch",
        ),
    ),
    "crane": (
        _sense(
            "bird",
            agents="the birdwatcher | the photographer | the fox | the naturalist | the "
            "ornithologist",
            actions="spotted | photographed | watched | followed | counted",
            adjectives="white | graceful | whooping | migrating | elegant",
            predicates="waded through the marsh | caught a small fish | spread its wings | nested "
            "in the wetland | called to its mate",
            details="wading in the shallows | standing on one leg | nesting in the reeds | "
            "migrating south for winter | feeding on frogs",
            scenes="in the marsh | on the frozen lake | in the wetlands | in the shallow water | "
            "among the tall grass",
        ),
        _sense(
            "machine",
            agents="the operator | the builders | the construction crew | the site manager | the "
            "dock workers",
            actions="operated | repaired | dismantled | assembled | climbed",
            adjectives="tower | huge | yellow | mobile | diesel",
            predicates="lifted the steel beams | swung over the building site | toppled in the "
            "wind | loaded the cargo ship | raised the concrete slabs",
            details="lifting steel beams | parked beside the scaffolding | loading containers onto "
            "the ship | towering over the site | mounted on a truck",
            scenes="on the building site | at the harbour | above the new tower | at the docks | "
            "beside the scaffolding",
        ),
    ),
    "mouse": (
        _sense(
            "animal",
            agents="the cat | the owl | the farmer | the children | the hawk",
            actions="chased | caught | trapped | fed | frightened",
            adjectives="little | grey | timid | field | hungry",
            predicates="ran under the door | nibbled the cheese | hid in the barn | squeaked in "
            "the corner | escaped through a hole",
            details="hiding in the barn | nibbling the cheese | living under the floorboards | "
            "caught in the trap | running along the skirting board",
            scenes="in the barn | behind the cupboard | in the cornfield | under the floorboards | "
            "near the cheese",
        ),
        _sense(
            "computer",
            agents="the programmer | the designer | the gamer | the office worker | the typist",
            actions="clicked | plugged in | unplugged | configured | dragged",
            adjectives="wireless | optical | computer | ergonomic | gaming",
            predicates="stopped working | needed new batteries | moved the cursor | froze the "
            "screen | double clicked on the icon",
            details="connected to the laptop | plugged into the keyboard | lying next to the "
            "monitor | sold with the computer | powered by batteries",
            scenes="next to the keyboard | on the desk | beside the laptop | in the computer shop | "
            "by the monitor",
        ),
    ),
}

DEMO_WORDS: dict[str, tuple[str, ...]] = {
    word: tuple(sense.name for sense in senses) for word, senses in SENSES.items()
}

# Templates that frame the word with its sense on both sides (the held-out demo contexts come
# from these), then templates that leave one side neutral. Together they put the word in subject,
# object, clause and question positions, at the start, middle and end of sentences.
FRAMED_TEMPLATES = (
    "the {adjective} {word} {predicate} .",
    "{agent} {action} the {adjective} {word} {detail} .",
    "{scene} , the {adjective} {word} {predicate} .",
    "{person} said that the {adjective} {word} {predicate} .",
    "when the {adjective} {word} {predicate} , {person} {reaction} .",
    "is the {adjective} {word} {detail} ?",
    "{agent} {action} the {adjective} {word} {detail} {scene} .",
    "the {adjective} {word} {detail} {predicate} .",
)
OPEN_TEMPLATES = (
    "{agent} {action} the {adjective} {word} .",
    "{agent} {action} a {word} and {reaction} .",
    "{agent} {action} the {word} because it {predicate} .",
    "is there a {word} {scene} ?",
)
AMBIGUOUS_TEMPLATES = FRAMED_TEMPLATES + OPEN_TEMPLATES

# Neutral vocabulary, shared by all senses and the filler sentences.
PEOPLE = (
    "the old man",
    "my sister",
    "a teacher",
    "the doctor",
    "his mother",
    "the driver",
    "our neighbour",
    "the baker",
    "a young woman",
    "my uncle",
)
REACTIONS = (
    "went home",
    "smiled",
    "left early",
    "told everyone",
    "wrote it down",
    "laughed",
    "said nothing",
)
VERBS = (
    "carried",
    "painted",
    "found",
    "sold",
    "cleaned",
    "bought",
    "opened",
    "fixed",
    "lost",
    "wrapped",
)
THINGS = (
    "table",
    "book",
    "letter",
    "bicycle",
    "basket",
    "window",
    "car",
    "door",
    "chair",
    "parcel",
    "kettle",
    "coat",
)
THING_ADJECTIVES = ("red", "heavy", "small", "new", "blue", "cheap", "dusty")
TIMES = ("in the morning", "after lunch", "at the weekend", "on monday", "last night")
PLACES = ("the market", "the station", "school", "the library", "the office", "the museum")
LOCATIONS = ("in the kitchen", "on the floor", "in the hall", "under the stairs", "by the door")

FILLER_TEMPLATES = (
    "{person} {verb} the {thing} {time} .",
    "{person} went to {place} {time} .",
    "the {thing_adjective} {thing} was {location} .",
    "{person} 's {thing} was {thing_adjective} .",
    "{time} , {person} {verb} a {thing_adjective} {thing} .",
    "did {person} go to {place} {time} ?",
    "{person} and {other_person} {verb} the {thing} {location} .",
    "{person} {reaction} because the {thing} was {thing_adjective} .",
)


def _neutral_slots(rng: random.Random) -> dict[str, str]:
    return {
        "person": rng.choice(PEOPLE),
        "other_person": rng.choice(PEOPLE),
        "reaction": rng.choice(REACTIONS),
        "verb": rng.choice(VERBS),
        "thing": rng.choice(THINGS),
        "thing_adjective": rng.choice(THING_ADJECTIVES),
        "time": rng.choice(TIMES),
        "place": rng.choice(PLACES),
        "location": rng.choice(LOCATIONS),
    }


def ambiguous_sentence(rng: random.Random, template: str, word: str, sense: Sense) -> str:
    return template.format(
        word=word,
        agent=rng.choice(sense.agents),
        action=rng.choice(sense.actions),
        adjective=rng.choice(sense.adjectives),
        predicate=rng.choice(sense.predicates),
        detail=rng.choice(sense.details),
        scene=rng.choice(sense.scenes),
        **_neutral_slots(rng),
    )


def filler_sentence(rng: random.Random) -> str:
    return rng.choice(FILLER_TEMPLATES).format(**_neutral_slots(rng))


def generate(split: str) -> list[str]:
    """The sentences of `split` ("train" or "valid"), a pure function of the split's seed."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown demo split {split!r}; choose train or valid")
    rng = random.Random(SPLIT_SEEDS[split])
    words = list(SENSES)
    lines, n_tokens = [], 0
    while n_tokens < SPLIT_TOKENS[split]:
        if rng.random() < AMBIGUOUS_SHARE:
            word = rng.choice(words)
            sense = rng.choice(SENSES[word])
            line = ambiguous_sentence(rng, rng.choice(AMBIGUOUS_TEMPLATES), word, sense)
        else:
            line = filler_sentence(rng)
        lines.append(line)
        n_tokens += len(line.split())
    return lines


def corpus_text(split: str) -> str:
    """The exact content of `data/{split}.txt`."""
    return "\n".join(generate(split)) + "\n"


def corpus_path(split: str) -> Path:
    """The packaged file of `split` ("train" or "valid"); it ships inside the wheel."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown demo split {split!r}; choose train or valid")
    return DATA_DIR / f"{split}.txt"


@functools.cache
def _corpus_sentences() -> frozenset[str]:
    return frozenset(generate("train")) | frozenset(generate("valid"))


def demo_contexts(word: str) -> list[tuple[str, list[str]]]:
    """Held-out `(sense, tokens)` examples of `word`, `DEMO_CONTEXTS_PER_SENSE` per sense.

    All examples of a word share one framed template, so they differ only in the sense
    vocabulary around the word: sentence structure alone cannot pair them up, and a tiny biLM's
    vectors are dominated by structure when it varies. None appears in train.txt or valid.txt.
    Grouped by sense, in `DEMO_WORDS[word]` order.
    """
    if word not in SENSES:
        raise ValueError(f"{word!r} is not a demo word; choose one of {', '.join(SENSES)}")
    seen = _corpus_sentences()
    rng = random.Random(f"demo contexts of {word}")
    # A frame with few fillings may have all of them in the corpus: then try the next one.
    for template in rng.sample(FRAMED_TEMPLATES, len(FRAMED_TEMPLATES)):
        contexts = []
        for sense in SENSES[word]:
            draws = (ambiguous_sentence(rng, template, word, sense) for _ in range(_DEMO_DRAWS))
            fresh = [line for line in dict.fromkeys(draws) if line not in seen]
            contexts += [(sense.name, line.split()) for line in fresh[:DEMO_CONTEXTS_PER_SENSE]]
        if len(contexts) == DEMO_CONTEXTS_PER_SENSE * len(SENSES[word]):
            return contexts
    raise AssertionError(
        f"no framed template has {DEMO_CONTEXTS_PER_SENSE} unseen {word!r} examples"
    )


def main() -> None:
    DATA_DIR.mkdir(exist_ok=True)
    for split in SPLIT_SEEDS:
        lines = generate(split)
        corpus_path(split).write_text(corpus_text(split), encoding="utf-8")
        n_tokens = sum(len(line.split()) for line in lines)
        print(f"wrote {corpus_path(split)}: {len(lines)} sentences, {n_tokens} tokens")


if __name__ == "__main__":
    main()
