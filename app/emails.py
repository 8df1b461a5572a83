"""One normal form per email address, so that the same person always maps to one account
(sign-up, sign-in, `users create`, `credits grant`, `users promote`).

Decided per case:
* invisible characters (zero-width spaces and joiners, soft hyphens, bidi marks: Unicode
  category Cf) are removed, and so is the trailing dot of a fully-qualified domain: they
  make an address look like another, never a different mailbox anyone means to type;
* NFKC folds compatibility forms (full-width `ａｌｉｃｅ` is `alice`), then the whole address
  is lower-cased, as the app always did;
* email-validator then checks the syntax (control characters, quoting, IP literals, special
  domains like `.local` are refused) and puts the domain through IDNA: it is stored in its
  ASCII (`xn--…`) form, so `bücher.de` and `xn--bcher-kva.de` are one domain;
* the local part, and each label of the domain, must be written in one script
  (confusable-homoglyphs' Unicode script data), except the mixes UTS #39 calls highly
  restrictive (Latin with Han and Japanese kana, Bopomofo or Hangul): `аlice` with a
  Cyrillic `а` is refused rather than made a second Alice.
A whole address in another script (all-Cyrillic) is a different mailbox and is accepted.
"""

from __future__ import annotations

import unicodedata

from confusable_homoglyphs.categories import unique_aliases
from email_validator import EmailNotValidError, validate_email

INVALID = "Enter a valid email address."
_NEUTRAL = {"COMMON", "INHERITED"}  # digits, punctuation, combining marks
_ALLOWED_MIXES = (  # UTS #39 "highly restrictive"
    {"LATIN", "HAN", "HIRAGANA", "KATAKANA"},
    {"LATIN", "HAN", "BOPOMOFO"},
    {"LATIN", "HAN", "HANGUL"},
)


class InvalidEmail(ValueError):
    """The address cannot be an account's; the message is fit to show."""


def normalise_email(typed: str) -> str:
    """The normal form of `typed`, or InvalidEmail."""
    text = "".join(c for c in typed.strip() if unicodedata.category(c) != "Cf")
    text = unicodedata.normalize("NFKC", text).lower().removesuffix(".")
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidEmail(INVALID) from None
    local = checked.local_part
    for part in (local, *checked.domain.split(".")):
        scripts = unique_aliases(part) - _NEUTRAL
        if len(scripts) > 1 and not any(scripts <= mix for mix in _ALLOWED_MIXES):
            names = " and ".join(sorted(s.title() for s in scripts))
            raise InvalidEmail(f"This address mixes {names} letters, as look-alike addresses "
                               "do. Type it in one alphabet.")
    return f"{local}@{checked.ascii_domain}"


def legacy_form(typed: str) -> str:
    """How addresses were stored before they were normalised (trimmed, lower-cased): an
    account made then is still found by what its owner types."""
    return typed.strip().lower()[:254]
