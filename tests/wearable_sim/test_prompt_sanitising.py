"""What the owner reads is safe to show: escape sequences, bidi controls and other invisible
characters in a request's text fields never reach the prompt unmarked."""

from __future__ import annotations

import pytest

from terminal_input import MAX_FIELD, REPLACEMENT, sanitise
from wearable_sim.policy import ButtonPolicy, Prompt


@pytest.mark.parametrize("hostile", [
    "shop\x1b[2J\x1b[H",                      # clear the screen, cursor home
    "shop\x1b[1A\x1b[2KPay 1.00 EUR",         # rewrite the line above
    "shop\x1b]0;approved\x07",                # OSC: set the window title
    "shop\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "shop\x9b31m",                            # 8-bit CSI
    "shop\x1bc",                              # full reset
])
def test_ansi_escape_sequences_are_removed(hostile: str) -> None:
    shown = sanitise(hostile)
    assert "\x1b" not in shown and "\x9b" not in shown and "\x07" not in shown
    assert shown.startswith("shop")
    assert all(c.isprintable() for c in shown)


@pytest.mark.parametrize("char", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066",
                                  "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c",
                                  "\u200b", "\ufeff", "\x00", "\r", "\n", "\t", "\x7f",
                                  "\u2028", "\u2029", "\ud800", "\ue000"])
def test_bidi_format_and_control_characters_are_replaced_visibly(char: str) -> None:
    shown = sanitise(f"mal{char}lory")
    assert shown == f"mal{REPLACEMENT}lory"


def test_bidi_override_cannot_reverse_the_payee() -> None:
    """'moc.kab\u202e' style spoofing: the override is shown as U+FFFD, the text in its
    stored order."""
    prompt = Prompt(99_999_999, "EUR", "\u202emallory\u202c", "A-1", "refund \u2067x\u2069")
    text = prompt.text()
    assert "\u202e" not in text and "\u2067" not in text
    assert f"to {REPLACEMENT}mallory{REPLACEMENT} " in text
    assert text.startswith("Pay 999999.99 EUR")


def test_fields_are_bounded() -> None:
    shown = sanitise("x" * 10_000)
    assert len(shown) == MAX_FIELD and shown.endswith("\N{HORIZONTAL ELLIPSIS}")
    text = Prompt(1, "EUR", "p" * 500, "r" * 500, "d" * 5000).text()
    assert len(text) < 64 + 64 + MAX_FIELD + 60


def test_honest_text_is_unchanged() -> None:
    text = Prompt(1250, "EUR", "shop-42", "A-17", "Café crème, 2 x — ¥ & 中文").text()
    assert text == "Pay 12.50 EUR to shop-42 (order A-17: Café crème, 2 x — ¥ & 中文)"


async def test_the_button_prompt_prints_the_sanitised_text(tmp_path: object,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    import asyncio
    from pathlib import Path

    policy = ButtonPolicy(Path(str(tmp_path)) / "b.sock", pressable=False)
    task = asyncio.create_task(policy.decide(Prompt(100, "EUR", "evil\x1b[2J\u202e", "o", "d")))
    await asyncio.sleep(0.05)
    task.cancel()
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert f"evil{REPLACEMENT}" in out
