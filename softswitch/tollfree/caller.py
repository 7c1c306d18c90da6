"""Who is calling a toll-free number: the caller's number, normalised and typed.

Pure: no I/O, no clock. phonenumbers (libphonenumber's metadata) types and splits the
number; the charging area and prefecture come from the checked-in table `areas.py`.

Rules, in the order `parse_caller()` applies them:
1. The identity is a From or P-Asserted-Identity (RFC 3325 §9.1) value or its user part:
   a display name and angle brackets are dropped, then a `sip:`/`sips:` URI's user part
   (RFC 3261 §19.1.1) or a `tel:` URI's number (RFC 3966 §3) is taken, without its
   parameters, percent-decoded (RFC 3261 §25.1). Full-width digits count as digits
   (NFKC) and the visual separators `-`, `.`, `(`, `)` and spaces are dropped
   (RFC 3966 §5.1.1).
2. No number is `UNAVAILABLE`: an empty identity, `unavailable`, `unknown`, or a URI
   without a user part. `anonymous` (RFC 3323 §4.1.1.3, `sip:anonymous@anonymous.invalid`),
   `restricted`, `private` and `withheld`, or `privacy_requested` (the request carried
   `Privacy: id` or `user`, RFC 3325 §9.3 / RFC 3323 §4.2), are `WITHHELD`.
3. A leading 184 (非通知: the caller withholds the number) or 186 (通知: the caller
   shows it) is the caller's presentation choice, not part of the number; it is
   removed. 184 marks the caller `withheld` while the number behind it is still typed.
4. `+81` (E.164), `81` followed by 9 or 10 digits (E.164 without the plus) and `010 81`
   (Japan's international prefix) become the national form `0...`. Any other `+` or
   `010` number is `INTERNATIONAL`.
5. A national number is typed by the Japanese numbering plan (電気通信番号規則):
   070/080/090 + 8 digits `MOBILE`, 050 + 8 digits `IP_PHONE`, a valid geographic
   number (phonenumbers FIXED_LINE) `FIXED`, any other valid number (0120, 0800, 0570,
   020, 060, ...) `NON_GEOGRAPHIC`, anything else `UNKNOWN`. A 10-digit number
   phonenumbers' metadata does not know but whose prefix the area table holds is taken
   as `FIXED` (newly opened blocks must not be refused for stale metadata).
6. A `FIXED` number's area code is its first digits as phonenumbers splits them
   (`length_of_geographical_area_code`: `03`, `011`, `0166`); its charging area (MA)
   and prefecture come from the longest prefix of the number in `areas.AREA_PREFIXES`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

import phonenumbers

from .areas import AREA_PREFIXES

__all__ = [
    "SHOW_PREFIX",
    "WITHHOLD_PREFIX",
    "CallerKind",
    "CallerNumber",
    "charging_area_of_number",
    "parse_caller",
    "prefecture_of_area_code",
    "split_presentation_prefix",
]


class CallerKind(enum.StrEnum):
    """The type of a caller's number (or why there is none)."""

    FIXED = "fixed"
    """A geographic number (固定電話): it has an area code and a charging area."""
    MOBILE = "mobile"
    """070, 080, 090 (携帯電話, PHS)."""
    IP_PHONE = "ip_phone"
    """050 (IP電話): never connected to a toll-free number."""
    INTERNATIONAL = "international"
    """Any country but Japan (+81): never connected to a toll-free number."""
    NON_GEOGRAPHIC = "non_geographic"
    """A valid Japanese number without an area: 0120, 0800, 0570, 020, 060, ..."""
    UNKNOWN = "unknown"
    """Digits that are no valid number."""
    WITHHELD = "withheld"
    """No number: the caller withholds it (anonymous, Privacy: id)."""
    UNAVAILABLE = "unavailable"
    """No number for another reason (none sent, `unavailable`)."""


@dataclass(frozen=True, slots=True)
class CallerNumber:
    """A caller's number as the designation check sees it."""

    kind: CallerKind
    withheld: bool
    """The caller asked not to show the number (184, anonymous, Privacy). True for
    `WITHHELD`; also for a 184-prefixed number, whose `kind` is then its type."""
    national_number: str | None = None
    """Japanese numbers: the national form (`0312345678`)."""
    e164: str | None = None
    """The E.164 form (`+81312345678`, `+12125551234`), when there are digits."""
    area_code: str | None = None
    """`FIXED`: the area code with its leading 0 (`03`, `011`, `0166`), if known."""
    charging_area: str | None = None
    """`FIXED`: the MA (単位料金区域) name in Japanese (`東京`, `武蔵野三鷹`), if known."""
    prefecture: str | None = None
    """`FIXED`: the JIS X 0401 prefecture code (`13`), if known."""


_WITHHELD_WORDS = frozenset({"anonymous", "restricted", "private", "withheld"})
_UNAVAILABLE_WORDS = frozenset({"", "unavailable", "unknown"})
_VISUAL_SEPARATORS = str.maketrans("", "", "-.() \t")  # RFC 3966 §5.1.1, and spaces
WITHHOLD_PREFIX = "184"
"""非通知: dialled before a number, the caller withholds their number on this call."""
SHOW_PREFIX = "186"
"""通知: dialled before a number, the caller shows their number on this call."""
_INTERNATIONAL_PREFIX = "010"  # Japan's international call prefix
_COUNTRY_CODE = "81"
_MOBILE_PREFIXES = ("070", "080", "090")
_IP_PHONE_PREFIX = "050"
_NATIONAL_LENGTH_LONG = 11  # 070/080/090/050 + 8 digits
_NATIONAL_LENGTH_FIXED = 10  # 0 + 9 digits (geographic numbers)


def _user_part(identity: str) -> str:
    """The user part (or tel: number) of a name-addr, addr-spec or bare user part."""
    text = unicodedata.normalize("NFKC", identity).strip()
    if "<" in text:
        # name-addr (RFC 3261 §25.1): the URI is between the angle brackets.
        text = text.partition("<")[2].partition(">")[0]
    lowered = text.lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            if scheme != "tel:":
                # sip:user@host: no '@' means no user part (RFC 3261 §19.1.1).
                user, at, _host = text.partition("@")
                text = user if at else ""
            break
    # User or tel: parameters (`;isub=`, `;phone-context=`, RFC 3966 §3) are not digits.
    text = text.partition(";")[0]
    return unquote(text).translate(_VISUAL_SEPARATORS)


def parse_caller(identity: str | None, *, privacy_requested: bool = False) -> CallerNumber:
    """Normalise and type a caller's identity (see the module rules).

    Args:
        identity: the From or P-Asserted-Identity header value, its URI, or its user
            part; None when the request carried none.
        privacy_requested: the request asked for the identity to be withheld
            (`Privacy: id` or `user`).

    Returns:
        The caller's number; never raises on malformed input (it is `UNKNOWN`).
    """
    caller = _parsed(_user_part(identity) if identity is not None else "")
    if privacy_requested and not caller.withheld:
        if caller.kind in (CallerKind.UNKNOWN, CallerKind.UNAVAILABLE):
            return CallerNumber(CallerKind.WITHHELD, withheld=True)
        return dataclasses.replace(caller, withheld=True)
    return caller


def _parsed(user: str) -> CallerNumber:
    word = user.lower()
    if word in _WITHHELD_WORDS:
        return CallerNumber(CallerKind.WITHHELD, withheld=True)
    if word in _UNAVAILABLE_WORDS:
        return CallerNumber(CallerKind.UNAVAILABLE, withheld=False)
    choice, user = split_presentation_prefix(user)
    withheld = choice is True
    if withheld and not user:
        return CallerNumber(CallerKind.WITHHELD, withheld=True)
    return _typed(user, withheld=withheld)


def split_presentation_prefix(digits: str) -> tuple[bool | None, str]:
    """Rule 3: the caller's presentation choice in front of `digits`, and the rest.

    Returns:
        (True, rest) after 184 (withhold), (False, rest) after 186 (show), and
        (None, digits) when neither leads. Shared with the cloud PBX, where 184/186 are
        dialled in front of an external number (`softswitch.b2bua.pbx_routing` rule 7).
    """
    if digits.startswith(WITHHOLD_PREFIX):
        return True, digits[len(WITHHOLD_PREFIX) :]
    if digits.startswith(SHOW_PREFIX):
        return False, digits[len(SHOW_PREFIX) :]
    return None, digits


def _typed(digits: str, *, withheld: bool) -> CallerNumber:
    """Type `digits` (a `+` allowed in front) per rules 4 and 5."""
    if digits.startswith(_INTERNATIONAL_PREFIX):
        digits = "+" + digits[len(_INTERNATIONAL_PREFIX) :]
    elif (
        digits.startswith(_COUNTRY_CODE)
        and len(digits) in (len(_COUNTRY_CODE) + 9, len(_COUNTRY_CODE) + 10)
    ):
        digits = "+" + digits
    if digits.startswith("+" + _COUNTRY_CODE):
        digits = "0" + digits[1 + len(_COUNTRY_CODE) :]
    elif digits.startswith("+"):
        if not digits[1:].isascii() or not digits[1:].isdigit():
            return CallerNumber(CallerKind.UNKNOWN, withheld=withheld)
        return CallerNumber(CallerKind.INTERNATIONAL, withheld=withheld, e164=digits)
    if not digits.isascii() or not digits.isdigit() or not digits.startswith("0"):
        return CallerNumber(CallerKind.UNKNOWN, withheld=withheld)
    return _typed_national(digits, withheld=withheld)


def _typed_national(national: str, *, withheld: bool) -> CallerNumber:
    e164 = "+" + _COUNTRY_CODE + national[1:]
    if len(national) == _NATIONAL_LENGTH_LONG and national.startswith(_MOBILE_PREFIXES):
        return CallerNumber(CallerKind.MOBILE, withheld, national, e164)
    if len(national) == _NATIONAL_LENGTH_LONG and national.startswith(_IP_PHONE_PREFIX):
        return CallerNumber(CallerKind.IP_PHONE, withheld, national, e164)
    try:
        parsed = phonenumbers.parse(national, "JP")
    except phonenumbers.NumberParseException:
        return CallerNumber(CallerKind.UNKNOWN, withheld, national, e164)
    area = charging_area_of_number(national)
    if phonenumbers.is_valid_number(parsed):
        if phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.FIXED_LINE:
            return CallerNumber(CallerKind.NON_GEOGRAPHIC, withheld, national, e164)
        length = phonenumbers.length_of_geographical_area_code(parsed)
        area_code = national[: 1 + length] if length else None
    elif len(national) == _NATIONAL_LENGTH_FIXED and area is not None:
        area_code = None  # rule 5: stale metadata; the table still knows the area
    else:
        return CallerNumber(CallerKind.UNKNOWN, withheld, national, e164)
    place, prefecture = area if area is not None else (None, None)
    return CallerNumber(CallerKind.FIXED, withheld, national, e164, area_code, place, prefecture)


def charging_area_of_number(national: str) -> tuple[str, str] | None:
    """(MA name, JIS prefecture code) of the longest prefix of `national` in the table."""
    for length in range(min(len(national), _LONGEST_PREFIX), 1, -1):
        found = AREA_PREFIXES.get(national[:length])
        if found is not None:
            return found
    return None


_LONGEST_PREFIX = max(len(prefix) for prefix in AREA_PREFIXES)


@functools.lru_cache(maxsize=1024)
def prefecture_of_area_code(area_code: str) -> str | None:
    """The JIS prefecture code of every number under `area_code` (`03` -> `13`), or None
    when the table does not know the code or its numbers lie in several prefectures
    (`042`: Tokyo and Kanagawa and Saitama MAs)."""
    prefectures = {
        prefecture
        for prefix, (_place, prefecture) in AREA_PREFIXES.items()
        if prefix.startswith(area_code)
    }
    enclosing = charging_area_of_number(area_code)
    if enclosing is not None:
        prefectures.add(enclosing[1])
    return prefectures.pop() if len(prefectures) == 1 else None
