"""Caller numbers: normalising, typing, area codes and prefectures; the area check."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.tollfree import AreaReason, CallerKind, check_area, parse_caller

from .factories import tollfree


@pytest.mark.parametrize(
    ("identity", "area_code", "charging_area", "prefecture"),
    [
        ("0312345678", "03", "東京", "13"),
        ("sip:0312345678@192.0.2.1;user=phone", "03", "東京", "13"),
        ('"Taro" <tel:+81-3-1234-5678>', "03", "東京", "13"),
        ("０３（１２３４）５６７８", "03", "東京", "13"),
        ("81312345678", "03", "東京", "13"),
        ("tel:+81.6.1234.5678", "06", "大阪", "27"),
        ("0112112111", "011", "札幌", "01"),
        ("+81166231111", "0166", "旭川", "01"),
        ("0422451151", "0422", "武蔵野三鷹", "13"),
        # Machida (Tokyo) numbers belong to the Sagamihara MA: the charging area decides.
        ("0427223111", "042", "相模原", "14"),
    ],
)
def test_fixed_numbers(
    identity: str, area_code: str, charging_area: str, prefecture: str
) -> None:
    caller = parse_caller(identity)
    assert caller.kind is CallerKind.FIXED
    assert not caller.withheld
    assert (caller.area_code, caller.charging_area, caller.prefecture) == (
        area_code,
        charging_area,
        prefecture,
    )
    assert caller.national_number is not None and caller.national_number.startswith("0")


@pytest.mark.parametrize(
    ("identity", "kind"),
    [
        ("09012345678", CallerKind.MOBILE),
        ("+818012345678", CallerKind.MOBILE),
        ("070-1234-5678", CallerKind.MOBILE),
        ("05012345678", CallerKind.IP_PHONE),
        ("+12125551234", CallerKind.INTERNATIONAL),
        ("sip:+442079460958@192.0.2.1", CallerKind.INTERNATIONAL),
        ("010-1-212-555-1234", CallerKind.INTERNATIONAL),
        ("0120123456", CallerKind.NON_GEOGRAPHIC),
        ("0570000000", CallerKind.NON_GEOGRAPHIC),
        ("anonymous", CallerKind.WITHHELD),
        ("Anonymous", CallerKind.WITHHELD),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', CallerKind.WITHHELD),
        ("184", CallerKind.WITHHELD),
        ("", CallerKind.UNAVAILABLE),
        (None, CallerKind.UNAVAILABLE),
        ("unavailable", CallerKind.UNAVAILABLE),
        ("sip:192.0.2.1", CallerKind.UNAVAILABLE),
        ("abc", CallerKind.UNKNOWN),
        ("12345", CallerKind.UNKNOWN),
    ],
)
def test_kinds(identity: str | None, kind: CallerKind) -> None:
    assert parse_caller(identity).kind is kind


def test_184_withholds_a_typed_number() -> None:
    caller = parse_caller("1840312345678")
    assert caller.withheld
    assert caller.kind is CallerKind.FIXED
    assert caller.prefecture == "13"


def test_186_shows_the_number() -> None:
    caller = parse_caller("1860612345678")
    assert not caller.withheld
    assert (caller.kind, caller.area_code, caller.prefecture) == (CallerKind.FIXED, "06", "27")


def test_privacy_withholds_the_number() -> None:
    caller = parse_caller("sip:0312345678@192.0.2.1", privacy_requested=True)
    assert caller.withheld and caller.kind is CallerKind.FIXED
    caller = parse_caller("tel:+81312345678", privacy_requested=True)
    assert caller.withheld and caller.prefecture == "13"
    assert parse_caller("1840312345678", privacy_requested=True).area_code == "03"
    assert parse_caller(None, privacy_requested=True).kind is CallerKind.WITHHELD


TOKYO_ONLY = tollfree(whole_country=False, prefectures=["13"])


def test_an_osaka_caller_to_a_tokyo_only_number_is_out_of_area() -> None:
    decision = check_area(TOKYO_ONLY, parse_caller("0612345678"))
    assert not decision.connect
    assert decision.reason is AreaReason.OUT_OF_AREA
    assert decision.prefecture == "27"


def test_a_tokyo_caller_to_a_tokyo_only_number_connects() -> None:
    decision = check_area(TOKYO_ONLY, parse_caller("0312345678"))
    assert decision.connect
    assert decision.reason is AreaReason.IN_DESIGNATED_AREA


def test_area_codes_match_exactly() -> None:
    entry = tollfree(whole_country=False, area_codes=["042"])
    assert check_area(entry, parse_caller("0427223111")).connect
    assert not check_area(entry, parse_caller("0422451151")).connect


def test_ip_phone_and_international_never_connect() -> None:
    everyone = tollfree()
    assert check_area(everyone, parse_caller("05012345678")).reason is (
        AreaReason.IP_PHONE_REFUSED
    )
    assert check_area(everyone, parse_caller("+12125551234")).reason is (
        AreaReason.INTERNATIONAL_REFUSED
    )


def test_phone_type_toggles() -> None:
    no_mobile = tollfree(allow_mobile=False)
    assert check_area(no_mobile, parse_caller("09012345678")).reason is AreaReason.MOBILE_REFUSED
    no_fixed = tollfree(allow_fixed=False)
    assert check_area(no_fixed, parse_caller("0312345678")).reason is AreaReason.FIXED_REFUSED
    no_withheld = tollfree(allow_withheld=False)
    assert check_area(no_withheld, parse_caller("anonymous")).reason is (
        AreaReason.WITHHELD_REFUSED
    )
    assert check_area(no_withheld, parse_caller("1840312345678")).reason is (
        AreaReason.WITHHELD_REFUSED
    )
    assert check_area(no_withheld, parse_caller(None)).reason is AreaReason.UNAVAILABLE_REFUSED
    assert check_area(no_withheld, parse_caller("1860312345678")).connect


def test_callers_without_an_area_under_a_prefecture_designation() -> None:
    assert check_area(TOKYO_ONLY, parse_caller("09012345678")).reason is (
        AreaReason.MOBILE_ALLOWED
    )
    assert check_area(TOKYO_ONLY, parse_caller("anonymous")).reason is (
        AreaReason.WITHHELD_ALLOWED
    )
    assert check_area(TOKYO_ONLY, parse_caller("0120123456")).reason is AreaReason.OUT_OF_AREA
    assert check_area(tollfree(), parse_caller("0120123456")).reason is (
        AreaReason.WHOLE_COUNTRY
    )


def test_an_asserted_area_wins() -> None:
    mobile = parse_caller("09012345678")
    osaka = check_area(TOKYO_ONLY, mobile, asserted_area_code="06")
    assert (osaka.reason, osaka.prefecture) == (AreaReason.OUT_OF_AREA, "27")
    assert check_area(TOKYO_ONLY, mobile, asserted_prefecture="13").connect
    # A fixed number's own area is overridden by what the trusted trunk asserts.
    assert check_area(TOKYO_ONLY, parse_caller("0612345678"), asserted_prefecture="13").connect


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-.()<>@:;=abcnoyipst漢０ ", max_size=40))
def test_property_parse_caller_never_raises(identity: str) -> None:
    caller = parse_caller(identity)
    check_area(TOKYO_ONLY, caller)
