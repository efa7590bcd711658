"""clean_caption on answers shaped like real chat-model output; with_trigger."""

from __future__ import annotations

import pytest

from aiprod_recipes.captioning.cleanup import clean_caption, with_trigger

CASES = [
    (
        "Here is a caption for the video:\n\nA woman in a red coat walks her dog along a "
        "snowy park path at dusk.",
        "A woman in a red coat walks her dog along a snowy park path at dusk.",
    ),
    (
        "Sure! Here's a detailed description of the video:\n\nA chef slices onions on a "
        "wooden board while oil sizzles in a pan. He says, \"Now we add the garlic.\"",
        "A chef slices onions on a wooden board while oil sizzles in a pan. He says, "
        "\"Now we add the garlic.\"",
    ),
    (
        "Caption: A drone shot glides over a turquoise bay; waves break softly on the rocks.",
        "A drone shot glides over a turquoise bay; waves break softly on the rocks.",
    ),
    (
        "**Description:** A close-up of a guitarist's hands strumming an acoustic guitar, "
        "warm lamp light, gentle folk music.",
        "A close-up of a guitarist's hands strumming an acoustic guitar, warm lamp light, "
        "gentle folk music.",
    ),
    (
        "\"A toddler laughs while splashing in a plastic pool on a sunny lawn.\"",
        "A toddler laughs while splashing in a plastic pool on a sunny lawn.",
    ),
    (
        "A man repairs a bicycle in a garage. Tools clatter and a radio plays pop music.\n\n"
        "Let me know if you would like a shorter version!",
        "A man repairs a bicycle in a garage. Tools clatter and a radio plays pop music.",
    ),
    (
        "## Video Description\n\n- A red car drives along a coastal road\n- The camera "
        "follows from a helicopter\n- Engine noise and wind are heard",
        "A red car drives along a coastal road. The camera follows from a helicopter. "
        "Engine noise and wind are heard.",
    ),
    (
        "Certainly. Here is the caption:\n```\nTwo kids build a sandcastle at low tide while "
        "gulls cry overhead.\n```",
        "Two kids build a sandcastle at low tide while gulls cry overhead.",
    ),
    (
        "The video shows a *slow* pan across a **neon-lit** street at night, rain  "
        "reflecting   the signs.\nA saxophone plays in the distance.",
        "The video shows a slow pan across a neon-lit street at night, rain reflecting the "
        "signs. A saxophone plays in the distance.",
    ),
    (
        "Okay, here's a description of the clip. A barista pours latte art into a white cup; "
        "the espresso machine hisses. I hope this helps!",
        "A barista pours latte art into a white cup; the espresso machine hisses.",
    ),
    (
        "1. A hiker reaches a mountain summit.\n2. She raises her arms and shouts "
        "\"We made it!\"\n3. Wind roars across the microphone.",
        "A hiker reaches a mountain summit. She raises her arms and shouts \"We made it!\" "
        "Wind roars across the microphone.",
    ),
    (
        "`A cat knocks a glass off a kitchen counter; it shatters on the tile floor.`",
        "A cat knocks a glass off a kitchen counter; it shatters on the tile floor.",
    ),
    (
        "Video caption: “A street musician plays violin under a bridge as people pass by.”",
        "A street musician plays violin under a bridge as people pass by.",
    ),
    (
        "Here's a caption for your video:\n\n**Scene:** A news anchor at a desk reads the "
        "headlines. On-screen text reads \"BREAKING NEWS\".\n\n---\n\nFeel free to ask for "
        "changes.",
        "Scene: A news anchor at a desk reads the headlines. On-screen text reads "
        "\"BREAKING NEWS\".",
    ),
    (
        "A woman says \"let me know when you're ready\" and smiles at the camera.",
        "A woman says \"let me know when you're ready\" and smiles at the camera.",
    ),
    (
        "   A plain caption that needs nothing but whitespace fixing.\t\n",
        "A plain caption that needs nothing but whitespace fixing.",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_clean_caption_table(raw: str, expected: str) -> None:
    assert clean_caption(raw) == expected


def test_clean_caption_is_idempotent() -> None:
    for raw, _ in CASES:
        once = clean_caption(raw)
        assert clean_caption(once) == once


def test_caption_starting_with_an_ack_word_survives() -> None:
    assert clean_caption("OK Go performs on treadmills.") == "OK Go performs on treadmills."
    assert clean_caption("Okay here is the caption: A duck swims.") == "A duck swims."


def test_inner_snake_case_and_quotes_survive() -> None:
    text = 'A sign reads "file_name_v2" while a man says \'hi\'.'
    assert clean_caption(text) == text


@pytest.mark.parametrize(
    ("caption", "trigger", "expected"),
    [
        ("A dog runs.", "sks", "sks A dog runs."),
        ("sks A dog runs.", "sks", "sks A dog runs."),
        ("sks, a dog runs.", "sks", "sks, a dog runs."),
        ("sksdog runs.", "sks", "sks sksdog runs."),
        ("A dog runs.", "", "A dog runs."),
        ("A dog runs.", "  ", "A dog runs."),
    ],
)
def test_with_trigger(caption: str, trigger: str, expected: str) -> None:
    assert with_trigger(caption, trigger) == expected
