"""The one normal form of an email address (app/emails.py): look-alike spellings of one
address map to it, look-alikes made of mixed scripts are refused."""

from __future__ import annotations

import pytest

from app.emails import InvalidEmail, normalise_email


@pytest.mark.parametrize("typed", [
    "alice@example.com",
    " Alice@EXAMPLE.com ",
    "alice@example.com\u200b",  # zero-width space
    "al\u200dice@example.com",  # zero-width joiner
    "\ufeffalice@example.com",  # byte-order mark
    "alice\u00ad@example.com",  # soft hyphen
    "alice@example.com.",  # the DNS root's trailing dot
    "\uff41\uff4c\uff49\uff43\uff45@example.com",  # full-width letters (NFKC)
    "alice@\uff45xample.com",
])
def test_spellings_of_one_address_have_one_normal_form(typed):
    assert normalise_email(typed) == "alice@example.com"


@pytest.mark.parametrize(("typed", "normal"), [
    ("alice@b\u00fccher.de", "alice@xn--bcher-kva.de"),  # IDNA: stored as its A-label …
    ("alice@xn--bcher-kva.de", "alice@xn--bcher-kva.de"),  # … so both forms are one domain
    ("\u0418\u0432\u0430\u043d@\u043f\u043e\u0447\u0442\u0430.\u0440\u0444",
     "\u0438\u0432\u0430\u043d@xn--80a1acny.xn--p1ai"),  # one script (Cyrillic) throughout
    ("\u5c71\u7530\u305f\u308d\u3046@example.jp",
     "\u5c71\u7530\u305f\u308d\u3046@example.jp"),  # Han + Hiragana: allowed by UTS #39
    ("cafe\u0301@example.com", "caf\u00e9@example.com"),  # a combining mark, composed
])
def test_international_addresses_are_kept_in_one_form(typed, normal):
    assert normalise_email(typed) == normal
    assert normalise_email(normal) == normal  # idempotent: sign-in finds what sign-up stored


@pytest.mark.parametrize("typed", [
    "\u0430lice@example.com",  # Cyrillic а in a Latin local part
    "alice@\u0435xample.com",  # Cyrillic е in a Latin domain label
    "alice@xn--xample-2of.com",  # the same, sent in its IDNA form
    "p\u03b1ypal@example.com",  # Greek α
])
def test_mixed_script_look_alikes_are_refused(typed):
    with pytest.raises(InvalidEmail, match="mixes .* letters"):
        normalise_email(typed)


@pytest.mark.parametrize("typed", [
    "", "not-an-email", "two words@example.com", "a\x00@x.com", "a\x07lice@example.com",
    "alice@example.com..", "x" * 250 + "@example.com", '"quoted"@example.com',
    "alice@[127.0.0.1]", "alice@localhost", "alice@printer.local",
])
def test_malformed_addresses_are_refused(typed):
    with pytest.raises(InvalidEmail, match="Enter a valid email address"):
        normalise_email(typed)
