"""Answer parsers (irgpt.eval.parse): every format, tolerance, bounded work."""

import time

import pytest

from irgpt.eval.parse import (
    MAX_ANSWER_CHARS,
    MAX_ITEMS,
    Location,
    parse_boxes,
    parse_choice,
    parse_choice_set,
    parse_count,
    parse_index,
    parse_location,
    parse_options,
    parse_yes_no,
)

QUESTION = "What is the object in the picture?\n(A) person (B) duck (C) horse (D) crocodile"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<num>21</num>", 21),
        ("  < NUM >  21 </Num> ", 21),
        ("The count is <num>77</num>.", 77),
        ("<num>21", 21),  # truncated output: the tag runs to the end
        ("<num>21.0</num>", 21),
        ("There are 21 cars.", 21),  # no tag: the one number stated
        ("21 cars, I said 21", 21),  # the same number twice is still one
        ("<num>0</num>", 0),
        ("2 or 3 cars", None),  # ambiguous
        ("<num>2.5</num>", None),  # not a count
        ("<num>-3</num>", None),  # negative
        ("<num>twenty</num>", None),
        ("", None),
        (None, None),
        ("<num>" + "9" * 15 + "</num>", 10**15 - 1),  # 15 digits: the limit
        ("<num>" + "9" * 16 + "</num>", None),  # 16 digits: unparseable
    ],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


def test_parse_index_reads_a_digit():
    assert parse_index("8") == 8
    assert parse_index("The matching person is number 3.") == 3
    assert parse_index("1 or 5") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The target bounding box is <box>[[500, 223, 512, 238]]</box>.", [(500, 223, 512, 238)]),
        ("<box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>", [(1, 2, 3, 4), (5, 6, 7, 8)]),
        ("<BOX>[[ 1 ,2,  3,4 ]]</box>", [(1, 2, 3, 4)]),
        ("<box>[[1.5, 2, 3, 4.25]]</box>", [(1.5, 2, 3, 4.25)]),
        ("[[[[[1, 2, 3, 4]]]]]", [(1, 2, 3, 4)]),  # no tag, extra nesting
        ("box (1, 2, 3, 4) and box [5, 6, 7, 8] in image 2", [(1, 2, 3, 4), (5, 6, 7, 8)]),
        ("<box>[[1, 2, 3, 4]", [(1, 2, 3, 4)]),  # truncated
        ("<box>[]</box>", []),  # explicit empty answer
        ("<box>[[1, 2, 3]]</box>", None),  # three numbers is no box
        ("<box>[[a, b, c, d]]</box>", None),
        ("no box here", None),
        ("", None),
        ("<box>[[1, 2, 3, " + "4" * 16 + "]]</box>", None),  # over-long number
    ],
)
def test_parse_boxes(text, expected):
    assert parse_boxes(text) == expected


def test_parse_boxes_caps_the_item_count():
    # MAX_ITEMS boxes parse; one more makes the answer unparseable.
    assert len(parse_boxes("[0, 0, 1, 1]" * MAX_ITEMS)) == MAX_ITEMS
    assert parse_boxes("[0, 0, 1, 1]" * (MAX_ITEMS + 1)) is None


def test_parse_location():
    text = "<ref>car</ref> at <pos>[(120, 340), (560, 780)]</pos>"
    assert parse_location(text) == Location("car", [(120, 340), (560, 780)])
    assert parse_location("<ref> red  car </ref><pos>[[1, 2]]</pos>") == Location(
        "red car", [(1, 2)]
    )
    assert parse_location("It is at (10, 20).") == Location(None, [(10, 20)])
    assert parse_location("<ref>car</ref> at <pos>[]</pos>") == Location("car", [])
    assert parse_location("<pos>[(1, 2)]</pos> and <pos>[(3, 4)]</pos>").points == [(1, 2), (3, 4)]
    assert parse_location("there is no car") is None
    assert parse_location("<pos>[(1, 2, 3)]</pos>") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes", True),
        ("Yes.", True),
        ("  YES ", True),
        ("no", False),
        ("No, there is not.", False),
        ("No. Well, yes.", False),  # opens with no
        ("I think the answer is yes", True),
        ("I would not say yes or no", None),  # both, neither first
        ("None", None),  # "no" must be a whole word
        ("nothing", None),
        ("", None),
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def test_parse_options():
    assert parse_options(QUESTION) == {"A": "person", "B": "duck", "C": "horse", "D": "crocodile"}
    assert parse_options("Pick one.\n(A)  Old   Town. (B) sea\nAnswer with a letter.") == {
        "A": "old town",
        "B": "sea",
    }
    # An example list first, then the real one: the last run starting at (A) wins.
    assert parse_options("e.g. (A) x (B) y\n(A) cat (B) dog (C) cow") == {
        "A": "cat",
        "B": "dog",
        "C": "cow",
    }
    assert parse_options("no options") == {}


@pytest.mark.parametrize(
    "text",
    [
        "(B) forest",
        "(b) forest",
        "( B )forest",
        "The answer is (b)  Forest.",
        "B",
        "b.",
        " B) Forest",
        "The answer is B",
        "Option: B",
    ],
)
def test_parse_choice_letter_forms_differing_in_case_and_spacing(text):
    assert parse_choice(text) == "B"


def test_parse_choice_with_several_markers():
    # An answer echoing the option list is settled only by "answer is ...".
    echo = QUESTION.split("\n")[1]  # "(A) person (B) duck (C) horse (D) crocodile"
    assert parse_choice(echo + ". The answer is (c)") == "C"
    assert parse_choice(echo + "\nAnswer: D") == "D"
    assert parse_choice(echo) is None
    assert parse_choice("(A) or (B)") is None
    assert parse_choice("(B) forest, so (b)") == "B"  # one letter, twice


def test_parse_choice_by_option_text():
    options = parse_options(QUESTION)
    assert parse_choice("It is a Duck.", options) == "B"
    assert parse_choice("HORSE", options) == "C"
    assert parse_choice("a duck or a horse", options) is None  # two options named
    assert parse_choice("a ducky thing", options) is None  # whole words only
    assert parse_choice("It is a Duck.") is None  # no options to match against
    # A longer option containing a shorter one wins.
    assert parse_choice("a car park", {"A": "car", "B": "car park"}) == "B"
    assert parse_choice("A forest") is None  # an article, not a letter


def test_parse_choice_set():
    options = {"A": "scooter", "B": "motor", "C": "person", "D": "hydrant"}
    assert parse_choice_set("(A) scooter (B) motor (D) hydrant") == frozenset("ABD")
    assert parse_choice_set("(d) Hydrant ( a )  scooter (B)motor") == frozenset("ABD")
    assert parse_choice_set("A, B and D") == frozenset("ABD")
    assert parse_choice_set("a b d.") == frozenset("ABD")
    assert parse_choice_set("a scooter, a motor and a hydrant", options) == frozenset("ABD")
    assert parse_choice_set("scooter") is None
    assert parse_choice_set("") is None


def test_only_the_answer_prefix_is_parsed():
    padding = " " * (MAX_ANSWER_CHARS - len("<num>7</num>"))
    assert parse_count(padding + "<num>7</num>") == 7  # ends exactly at the cap
    assert parse_count(" " * MAX_ANSWER_CHARS + "<num>7</num>") is None  # wholly past it


def test_parsers_are_not_evaluators():
    # Python syntax that literal_eval/eval would accept is not a box.
    assert parse_boxes("<box>[[1+1, 2, 3, 4]]</box>") is None
    assert parse_boxes("<box>__import__('os')</box>") is None
    assert parse_boxes("<box>[[]]</box>") == []  # only brackets: an explicit empty answer
    assert parse_count("<num>1e3</num>") is None  # 1 and 3: ambiguous


HOSTILE = [
    "9" * 1_000_000,
    "<num>" + "9" * 1_000_000 + "</num>",
    "[" * 200_000,
    "(" * 200_000,
    "[" * 100_000 + "1, 2, 3, 4" + "]" * 100_000,
    "<box>" * 200_000,
    " " * 1_000_000 + "yes",
    "( " * 300_000,
    "answer is " * 100_000,
    "[" + "1, " * 400_000,
    "([<" * 300_000,
    "answer is" + " " * 1_000_000 + "x",  # long whitespace runs after a prefix
    "answer:" + " " * 1_000_000,
    "<num" + " " * 1_000_000,
    "(" + " " * 1_000_000,
    "B" + " " * 1_000_000 + "x",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_answers_parse_quickly(text):
    options = parse_options(QUESTION)
    start = time.perf_counter()
    results = [
        parse_count(text),
        parse_boxes(text),
        parse_location(text),
        parse_yes_no(text),
        parse_choice(text, options),
        parse_choice_set(text, options),
        parse_options(text),
    ]
    # Generous bound for a slow CI machine; each takes a few ms here.
    assert time.perf_counter() - start < 2.0
    assert results[0] is None or isinstance(results[0], int)
