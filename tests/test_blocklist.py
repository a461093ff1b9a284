"""The prompt blocklist: evasions that must be caught, innocent prompts that must pass."""

import pytest

from services.blocklist import (
    MAX_PATTERN_LENGTH,
    Blocklist,
    BlockMatch,
    InvalidBlocklistEntry,
    normalise,
    validate_entry,
)

GORE, ASS, NSFW, KILL, BLOOD_BATH, NUDE, CUM, NAZI, FILTH = 11, 12, 13, 14, 15, 16, 17, 18, 19

# Ids deliberately differ from positions, so a test cannot pass by reporting an index.
ENTRIES = [
    (GORE, "gore", False),
    (ASS, "ass", False),
    (NSFW, "nsfw", False),
    (KILL, "kill", False),
    (BLOOD_BATH, "blood bath", False),
    (NUDE, r"\bnud(e|ity)\b", True),
    (CUM, "cum", False),
    (NAZI, "nazi", False),
    (FILTH, "filth", False),
]
PATTERNS = {entry_id: pattern for entry_id, pattern, _ in ENTRIES}

SLASH = "\u0337"  # combining short solidus overlay: "b̷a̷d̷"


def _struck(text: str) -> str:
    return "".join(ch + SLASH for ch in text)


def _zalgo(text: str) -> str:
    return "".join(ch + "\u0338\u0322\u0353" for ch in text)


CAUGHT = [
    # case
    pytest.param("GORE everywhere", GORE, id="case-upper"),
    pytest.param("a KiLl scene", KILL, id="case-mixed"),
    # Unicode look-alikes
    pytest.param("ｎｓｆｗ art", NSFW, id="fullwidth-letters"),
    pytest.param("𝐤𝐢𝐥𝐥 the dragon", KILL, id="math-bold"),
    pytest.param("𝔤𝔬𝔯𝔢", GORE, id="math-fraktur"),
    pytest.param("ⓖⓞⓡⓔ", GORE, id="circled-letters"),
    pytest.param("ﬁlth on the walls", FILTH, id="ligature-fi"),
    pytest.param("n\u0430z\u0456 flag", NAZI, id="cyrillic-a-and-i"),
    pytest.param("\u0441um", CUM, id="cyrillic-es"),
    pytest.param("\u039d\u0391\u0396\u0399 parade", NAZI, id="greek-capitals"),
    pytest.param("g\u03bfre", GORE, id="greek-omicron"),
    pytest.param("Ｋ.１.Ｌ.Ｌ", KILL, id="fullwidth-dotted-digit"),
    # zero-width and invisible characters
    pytest.param("k\u200bill", KILL, id="zero-width-space"),
    pytest.param("a\u200cs\u200ds", ASS, id="zwnj-and-zwj"),
    pytest.param("g\u00adore", GORE, id="soft-hyphen"),
    pytest.param("n\u2060s\u2060f\u2060w", NSFW, id="word-joiner"),
    pytest.param("\ufeffnazi", NAZI, id="byte-order-mark"),
    # combining marks
    pytest.param("k\u00edll", KILL, id="accent-acute"),
    pytest.param("\u01f5\u0151\u0155\u00eb", GORE, id="accents-everywhere"),
    pytest.param(_struck("blood bath"), BLOOD_BATH, id="strikethrough-phrase"),
    pytest.param(_zalgo("cum"), CUM, id="zalgo"),
    # spacing and punctuation between letters
    pytest.param("k i l l", KILL, id="spaced-letters"),
    pytest.param("n.s.f.w", NSFW, id="dotted-letters"),
    pytest.param("g-o_r.e", GORE, id="mixed-separators"),
    pytest.param("k*i*l*l", KILL, id="asterisks"),
    pytest.param("ki-ll", KILL, id="hyphen-inside-word"),
    pytest.param("draw a g o r e scene", GORE, id="spaced-after-article"),
    # digit and symbol swaps
    pytest.param("g0re", GORE, id="leet-zero"),
    pytest.param("k1ll", KILL, id="leet-one-as-i"),
    pytest.param("ki11", KILL, id="leet-one-as-l"),
    pytest.param("n4z1", NAZI, id="leet-four-one"),
    pytest.param("a55", ASS, id="leet-fives"),
    pytest.param("@ss", ASS, id="leet-at-sign"),
    pytest.param("a$$", ASS, id="leet-dollars"),
    pytest.param("k!ll", KILL, id="leet-bang"),
    pytest.param("k|ll", KILL, id="leet-pipe"),
    pytest.param("n 5 f w", NSFW, id="leet-spaced-digit"),
    # repeated letters
    pytest.param("kiiiillll", KILL, id="repeats-kill"),
    pytest.param("gooooore", GORE, id="repeats-gore"),
    pytest.param("asssss", ASS, id="repeats-ass"),
    pytest.param("cuuuum", CUM, id="repeats-cum"),
    # ordinary punctuation around the word
    pytest.param("kill!!!", KILL, id="trailing-bangs"),
    pytest.param("(gore), 4k", GORE, id="parentheses"),
    pytest.param("#nsfw", NSFW, id="hashtag"),
    # multi-word phrase
    pytest.param("a blood bath in the arena", BLOOD_BATH, id="phrase"),
    pytest.param("BLOOD    BATH", BLOOD_BATH, id="phrase-extra-spaces"),
    pytest.param("blood\nbath", BLOOD_BATH, id="phrase-newline"),
    pytest.param("bloodbath", BLOOD_BATH, id="phrase-no-space"),
    pytest.param("blood-bath", BLOOD_BATH, id="phrase-hyphen"),
    pytest.param("b l o o d b a t h", BLOOD_BATH, id="phrase-spaced-letters"),
    pytest.param("bl00d b4th", BLOOD_BATH, id="phrase-leet"),
    # regex entry
    pytest.param("a nude statue", NUDE, id="regex-plain"),
    pytest.param("NUDITY", NUDE, id="regex-case"),
    pytest.param("n u d e", NUDE, id="regex-spaced"),
    pytest.param("n\u00fcdity", NUDE, id="regex-accent"),
    pytest.param("nud3", NUDE, id="regex-leet"),
    pytest.param("nu.de", NUDE, id="regex-dot-inside"),
    # inflections of a word entry (the reviewer's evasions first)
    pytest.param("nazis marching", NAZI, id="inflection-nazis"),
    pytest.param("he kills", KILL, id="inflection-kills"),
    pytest.param("killing spree", KILL, id="inflection-killing"),
    pytest.param("n a z i s", NAZI, id="inflection-spaced-plural"),
    pytest.param("killed in action", KILL, id="inflection-killed"),
    pytest.param("killer whale breaching", KILL, id="inflection-killer"),
    pytest.param("serial killers", KILL, id="inflection-killers"),
    pytest.param("k1ll1ng", KILL, id="inflection-leet-ing"),
    pytest.param("KILLLINGGG", KILL, id="inflection-repeats"),
    pytest.param("k-i-l-l-e-d", KILL, id="inflection-dotted"),
    pytest.param("asses", ASS, id="inflection-es"),
    pytest.param("nazi's flag", NAZI, id="inflection-possessive"),
    pytest.param("nazisss", NAZI, id="inflection-plural-repeats"),
    pytest.param("gored by a bull", GORE, id="inflection-e-final-d"),
    pytest.param("goring", GORE, id="inflection-e-dropped-ing"),
    pytest.param("filths", FILTH, id="inflection-plural"),
    pytest.param("two blood baths", BLOOD_BATH, id="inflection-phrase-last-word"),
    pytest.param("bloodbaths", BLOOD_BATH, id="inflection-phrase-joined"),
    # at the end of a maximum-length prompt
    pytest.param(("a castle on a hill, " * 200)[:3994] + " k1ll", KILL, id="end-of-4000-chars"),
]

INNOCENT = [
    # words that contain a blocked word
    pytest.param("class portrait of a wizard", id="class"),
    pytest.param("a friendly assistant robot", id="assistant"),
    pytest.param("green grass field", id="grass"),
    pytest.param("a secret passage in a castle", id="passage"),
    pytest.param("assassin on a rooftop", id="assassin"),
    pytest.param("bass guitar on stage", id="bass"),
    pytest.param("Massachusetts coastline", id="massachusetts"),
    pytest.param("a glass of wine, embassy garden", id="glass-embassy"),
    pytest.param("cucumber salad still life", id="cucumber"),
    pytest.param("document on a desk", id="document"),
    pytest.param("cumulus clouds at dawn", id="cumulus"),
    pytest.param("accumulated snow, vacuum cleaner", id="accumulated-vacuum"),
    pytest.param("Nazareth village at sunset", id="nazareth"),
    pytest.param("the Nazca lines from above", id="nazca"),
    pytest.param("skill tree diagram", id="skill"),
    pytest.param("a kiln in a pottery studio", id="kiln"),
    pytest.param("Kili the dwarf", id="kili-not-kill"),
    pytest.param("skills and skilled killjoy", id="skills-skilled-killjoy"),
    pytest.param("assess the damage, she assesses, assessing, assessed", id="assess"),
    pytest.param("classes of grasses in glasses", id="classes-grasses"),
    pytest.param("cumulative rainfall, cumin", id="cumulative-cumin"),
    pytest.param("Nazareth's old town", id="nazareths"),
    pytest.param("king of the hill", id="king-not-killing"),
    pytest.param("a goddess and a hostess", id="ess-words"),
    pytest.param("gorgeous gorges", id="gorges"),
    pytest.param("gorgeous mountain gorge", id="gorgeous"),
    pytest.param("blood orange on a plate", id="blood-orange"),
    pytest.param("a bath full of bubbles", id="bath"),
    pytest.param("a bloodhound puppy", id="bloodhound"),
    pytest.param("nudge the cat", id="nudge"),
    pytest.param("as seen from above", id="as-not-ass"),
    pytest.param("it's a s-bend pipe", id="contraction-single-letters"),
    # normal art prompts
    pytest.param(
        "an elegant ballroom, ultra detailed, volumetric lighting, trending on artstation",
        id="art-ballroom",
    ),
    pytest.param("1girl, 4k, 8k uhd, 35mm, f/1.8, bokeh", id="art-tags-with-digits"),
    pytest.param("RTX 3080 render at 1920x1080, 16:9", id="numbers"),
    pytest.param("a $5 coin, macro photo", id="dollar-price"),
    pytest.param("wow!!! amazing sunset | golden hour | 4k", id="bangs-and-pipes"),
    pytest.param("cat|dog|bird", id="pipe-separated"),
    pytest.param("i.e. a U.S.A. flag", id="abbreviations"),
    pytest.param("a caf\u00e9 in Paris, na\u00efve art", id="accented-words"),
    pytest.param("\u65e5\u672c\u306e\u98a8\u666f\u3001\u685c", id="japanese"),
    pytest.param("\u041c\u043e\u0441\u043a\u0432\u0430 at night", id="cyrillic-word"),
    pytest.param("k" + "1" * 3998 + "i", id="long-run-of-ones"),
]


@pytest.fixture(scope="module")
def blocklist() -> Blocklist:
    return Blocklist(ENTRIES)


@pytest.mark.parametrize(("prompt", "entry_id"), CAUGHT)
def test_evasion_is_caught(blocklist: Blocklist, prompt: str, entry_id: int) -> None:
    assert blocklist.check(prompt) == BlockMatch(entry_id, PATTERNS[entry_id])


@pytest.mark.parametrize("prompt", INNOCENT)
def test_innocent_prompt_passes(blocklist: Blocklist, prompt: str) -> None:
    assert blocklist.check(prompt) is None


def test_tables_are_large_enough() -> None:
    assert len(CAUGHT) >= 30
    assert len(INNOCENT) >= 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Ｂ.Ａ.Ｄ  k1ll!!", "bad kill", id="fullwidth-dots-leet"),
        pytest.param("𝐛𝐚𝐝", "bad", id="math-bold"),
        pytest.param("se\u00f1or", "senor", id="tilde"),
        pytest.param("\ufb01ne", "fine", id="ligature"),
        pytest.param("b\u200ba\u200bd", "bad", id="zero-width"),
        pytest.param("n\u0430z\u0456", "nazi", id="cyrillic"),
        pytest.param("b a d dog", "bad dog", id="single-letters-joined"),
        pytest.param("455 and 1920", "455 and 1920", id="numbers-unchanged"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_earliest_entry_wins_when_several_match() -> None:
    prompt = "gore and kill"
    assert Blocklist([(5, "kill", False), (3, "gore", False)]).check(prompt) == BlockMatch(
        5, "kill"
    )
    assert Blocklist([(3, "gore", False), (5, "kill", False)]).check(prompt) == BlockMatch(
        3, "gore"
    )


def test_regex_and_word_entries_report_their_own_id() -> None:
    entries = [(40, "kill", False), (41, r"\bdragons?\b", True)]
    blocklist = Blocklist(entries)
    assert blocklist.check("slay the dragon") == BlockMatch(41, r"\bdragons?\b")
    assert blocklist.check("k1ll it") == BlockMatch(40, "kill")
    assert blocklist.check("kill the dragon") == BlockMatch(40, "kill")
    assert Blocklist(entries[::-1]).check("kill the dragon") == BlockMatch(41, r"\bdragons?\b")


def test_regex_entries_with_flags_and_named_groups_work_alongside_others() -> None:
    # RE2 has no back-references, so a stored one is skipped; inline flags and a reused group
    # name still share the combined alternation with the other entries.
    blocklist = Blocklist(
        [
            (1, r"\bgr[o0]ss\b", True),
            (2, r"\b(\w)\1\1\b", True),
            (3, r"(?i)castle", True),
            (4, r"(?P<w>zz+)", True),
            (5, r"(?P<w>moat)", True),
        ]
    )
    assert [entry_id for entry_id, _ in blocklist.invalid] == [2]
    assert blocklist.check("zzz") == BlockMatch(4, r"(?P<w>zz+)")
    assert blocklist.check("a CASTLE") == BlockMatch(3, r"(?i)castle")
    assert blocklist.check("gr0ss") == BlockMatch(1, r"\bgr[o0]ss\b")
    assert blocklist.check("a moat") == BlockMatch(5, r"(?P<w>moat)")
    assert blocklist.check("a quiet meadow") is None


def test_empty_blocklist_passes_everything() -> None:
    assert Blocklist([]).check("gore kill nsfw") is None


def test_invalid_stored_entries_are_skipped_and_reported() -> None:
    blocklist = Blocklist([(1, r"(a)\1+", True), (2, "gore", False), (3, "!!!", False)])
    assert [entry_id for entry_id, _ in blocklist.invalid] == [1, 3]
    assert all(isinstance(exc, InvalidBlocklistEntry) for _, exc in blocklist.invalid)
    assert len(blocklist) == 1
    assert blocklist.check("g0re") == BlockMatch(2, "gore")
    assert blocklist.check("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!") is None


@pytest.mark.parametrize(
    ("pattern", "is_regex"),
    [
        pytest.param("gore", False, id="word"),
        pytest.param("blood bath", False, id="phrase"),
        pytest.param("a$$", False, id="word-with-symbols"),
        pytest.param(r"\bnud(e|ity)\b", True, id="regex"),
        pytest.param(r"(ab+)?c", True, id="optional-group-with-quantifier"),
        pytest.param(r"[(]x+", True, id="bracket-in-class"),
        pytest.param(r"gore\w*", True, id="regex-trailing-class"),
        pytest.param(r"(cat|dog)s?", True, id="regex-alternation-optional-s"),
        pytest.param(r"\bk[i1!]ll(s|ed|ing)?\b", True, id="regex-inflections"),
        pytest.param(r"https?://\S+", True, id="regex-url"),
        pytest.param(r"\b[a-z]+\s+[a-z]+ing\b", True, id="regex-disjoint-neighbours"),
        pytest.param("kill*", False, id="word-prefix"),
        # RE2 runs in linear time, so the shapes of catastrophic backtracking are fine now.
        pytest.param("(a+)+$", True, id="nested-quantifier"),
        pytest.param("(a|aa)*b", True, id="repeated-alternation"),
        pytest.param(r"(\w+\s?){3,}", True, id="counted-nested"),
        pytest.param(r"\d+\d+z", True, id="overlapping-neighbours"),
        pytest.param(r"(?i)castle", True, id="inline-flag"),
        pytest.param("x" * MAX_PATTERN_LENGTH, False, id="at-length-limit"),
    ],
)
def test_validate_entry_accepts(pattern: str, is_regex: bool) -> None:
    validate_entry(pattern, is_regex)


@pytest.mark.parametrize(
    ("pattern", "is_regex", "reason"),
    [
        pytest.param("", False, "is empty", id="empty-word"),
        pytest.param("   ", True, "is empty", id="blank-regex"),
        pytest.param("x" * (MAX_PATTERN_LENGTH + 1), False, "limit is 200", id="too-long"),
        pytest.param("!!! ...", False, "no letters or digits", id="punctuation-only"),
        pytest.param("(unclosed", True, "not a valid regular expression", id="unbalanced"),
        pytest.param("[a-", True, "not a valid regular expression", id="open-class"),
        pytest.param("a*", True, "matches empty text", id="matches-empty"),
        pytest.param(r"\b(\w)\1\b", True, "(back-references)", id="back-reference"),
        pytest.param(r"(?P<c>a)(?P=c)", True, "(back-references)", id="named-back-reference"),
        pytest.param(r"nude(?!l)", True, "(look-ahead/look-behind)", id="look-ahead"),
        pytest.param(r"(?<=a)b", True, "(look-ahead/look-behind)", id="look-behind"),
        pytest.param(r"(?>a+)b", True, "(atomic groups)", id="atomic-group"),
        pytest.param(r"a++b", True, "(possessive repeats", id="possessive"),
        pytest.param(r"a{2000}", True, "(a repeat count above 1000)", id="huge-repeat"),
    ],
)
def test_validate_entry_rejects(pattern: str, is_regex: bool, reason: str) -> None:
    with pytest.raises(InvalidBlocklistEntry) as caught:
        validate_entry(pattern, is_regex)
    assert caught.value.pattern == pattern
    assert reason in str(caught.value.reason)
    assert isinstance(caught.value, ValueError)
    assert reason in str(caught.value)


def test_reviewers_inflection_evasions_are_caught() -> None:
    blocklist = Blocklist([(1, "nazi", False), (2, "nude", False), (3, "kill", False)])
    for prompt, entry_id in [
        ("nazis", 1),
        ("nudes", 2),
        ("kills", 3),
        ("killing", 3),
        ("n a z i s", 1),
        ("nuded", 2),
        ("nuding", 2),
        ("killers", 3),
    ]:
        match = blocklist.check(prompt)
        assert match is not None and match.entry_id == entry_id, prompt
    for prompt in ["skill", "skills", "nudge", "Nazareth", "kiln", "nudist colony"]:
        assert blocklist.check(prompt) is None, prompt


def test_a_word_entry_with_a_trailing_star_matches_words_starting_with_it() -> None:
    blocklist = Blocklist([(1, "kill*", False), (2, "blood ba*", False)])
    for prompt, entry_id in [
        ("killstreak", 1),
        ("k i l l s t r e a k", 1),
        ("K1LLJOY", 1),
        ("kill", 1),
        ("blood bank", 2),
        ("bloodbarrel", 2),
    ]:
        match = blocklist.check(prompt)
        assert match is not None and match.entry_id == entry_id, prompt
    for prompt in ["skillstreak", "kiln", "a blood orange", "bath"]:
        assert blocklist.check(prompt) is None, prompt
    # Without the star the entry is a word, so longer words that merely start with it pass.
    assert Blocklist([(1, "kill", False)]).check("killstreak") is None


def test_an_inner_star_is_not_a_prefix() -> None:
    blocklist = Blocklist([(1, "k*i*l*l", False)])
    assert blocklist.check("kill") == BlockMatch(1, "k*i*l*l")
    assert blocklist.check("killstreak") is None


def test_regex_entries_see_a_prompt_that_folding_made_longer_than_4000_chars() -> None:
    # NFKC turns U+FDFA into 18 letters: the folded prompt is far beyond one regex window.
    blocklist = Blocklist([(1, r"\bnud(e|ity)\b", True), (2, r"\bass\b", True)])
    prompt = "\ufdfa " * 1500 + "nude " + "class " * 300
    assert blocklist.check(prompt) == BlockMatch(1, r"\bnud(e|ity)\b")
    # The whole text is searched at once, so "class" is never seen as "ass".
    assert blocklist.check("\ufdfa " * 1500 + "class " * 300) is None


# Shapes the old backtracking engine needed seconds or years for; RE2 is linear in the text.
HOSTILE_REGEXES = [
    pytest.param(r"(a+)+$", "a" * 3999 + "!", True, id="nested-quantifier-matches-view"),
    pytest.param(r"(a+)+b", "a" * 4000 + "c", False, id="nested-quantifier"),
    pytest.param(r"(a|aa)*b", "a" * 4000 + "c", False, id="repeated-alternation"),
    pytest.param(r"(\w+\s?){3,}x", "ab " * 1333 + "!", False, id="counted-nested"),
    pytest.param(r"\d+\d+\d+\d+z", "1" * 4000, False, id="digits-four-times"),
    pytest.param(r"a.*b.*c", "ab" * 2000, False, id="dot-stars"),
    pytest.param(r"a.*b.*c", "ab" * 2000 + "c", True, id="dot-stars-matches"),
    pytest.param(r"\d{1,10}\d{1,10}\d*z", "1" * 4000, False, id="bounded-then-star"),
]


@pytest.mark.parametrize(("pattern", "prompt", "blocked"), HOSTILE_REGEXES)
def test_catastrophic_backtracking_shapes_are_accepted_and_answer(
    pattern: str, prompt: str, blocked: bool
) -> None:
    validate_entry(pattern, True)
    blocklist = Blocklist([(1, pattern, True)])
    assert len(blocklist) == 1 and blocklist.invalid == ()
    expected = BlockMatch(1, pattern) if blocked else None
    assert blocklist.check(prompt) == expected


def test_an_unsupported_regex_is_refused_with_an_explanation() -> None:
    with pytest.raises(InvalidBlocklistEntry) as caught:
        validate_entry(r"nud(?=e)", True)
    assert str(caught.value.reason) == (
        "uses a feature the blocklist doesn't support (look-ahead/look-behind). "
        "Use plain words, word*, or a simpler pattern."
    )
    # Stored before: skipped, with the same reason for the moderators' list.
    blocklist = Blocklist([(7, r"(\w)\1", True)])
    assert len(blocklist) == 0
    [(entry_id, exc)] = blocklist.invalid
    assert entry_id == 7 and "doesn't support (back-references)" in str(exc.reason)


def test_es_and_c_endings_and_quoted_exact_entries() -> None:
    blocklist = Blocklist([(1, "mac", False), (2, "butt", False), (3, '"pot"', False)])
    assert blocklist.check("three macs") == BlockMatch(1, "mac")
    for prompt in ["maces and maced knights", "macing", "pots"]:
        assert blocklist.check(prompt) is None, prompt
    assert blocklist.check("butter") == BlockMatch(2, "butt")  # -er: why quoting exists
    assert blocklist.check("a pot") == BlockMatch(3, '"pot"')
    assert Blocklist([(4, '"butt"', False)]).check("bread and butter") is None
    assert Blocklist([(5, '"blood bath"', False)]).check("blood baths") is None
