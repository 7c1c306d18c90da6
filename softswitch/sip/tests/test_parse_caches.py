"""The parser's caches and fast paths answer exactly as the general code does.

`parse_message` takes header lines from a line cache; `validate()` follows a plan worked
out once per set of header keys; name-addr, Via, CSeq and media-type values come from
parse caches, and name-addr values of the common shapes from a fast regex. Each must be
invisible: the same fields, the same typed values, the same error (reason and status)
for every message, cold or warm, through the plan or through the general loop.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip import RemoteProtocolError, parse_message
from softswitch.sip import message as message_module
from softswitch.sip.headers import (
    NameAddress,
    _parse_name_address,
    clear_parse_caches,
    parse_name_address,
)
from softswitch.sip.tests.corpus import CORPUS
from softswitch.sip.tests.test_parser_fuzz import mutated_corpus_message, plausible_message

SAMPLES = [path.read_bytes() for path in sorted(CORPUS.glob("*.dat"))]


def _outcome(data: bytes) -> tuple[object, ...]:
    """Everything observable of parsing and validating `data`."""
    try:
        message = parse_message(data)
    except RemoteProtocolError as error:
        return ("parse", error.reason, error.status_code)
    fields = list(message.headers._fields)
    try:
        message.validate()
    except RemoteProtocolError as error:
        return ("validate", fields, error.reason, error.status_code)
    typed = {
        key: repr(value) for key, value in message.headers._typed.items() if key[0] != "\0"
    }
    return ("valid", fields, typed, message.to_bytes())


def _cold_warm_general(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    clear_parse_caches()
    cold = _outcome(data)
    warm = _outcome(data)
    with monkeypatch.context() as patch:
        # validate() through its general loop only: no plan is found nor made.
        patch.setattr(message_module, "_validation_plan", lambda present: None)
        patch.setattr(message_module, "_VALIDATION_PLANS", {})
        clear_parse_caches()
        general = _outcome(data)
    assert cold == warm == general


@pytest.mark.parametrize("data", SAMPLES, ids=[path.stem for path in sorted(CORPUS.glob("*.dat"))])
def test_corpus_outcome_is_the_same_cold_warm_and_without_plan(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cold_warm_general(data, monkeypatch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.one_of(mutated_corpus_message(), plausible_message()))
def test_fuzzed_outcome_is_the_same_cold_warm_and_without_plan(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cold_warm_general(data, monkeypatch)


def _shape(address: NameAddress) -> tuple[object, ...]:
    return (address._uri_text, address.display_name, address.parameters, address.wildcard)


NAME_ADDRESSES = [
    '"sipp" <sip:sipp@127.0.0.2:5061>;tag=1',
    "sipp <sip:sipp@127.0.0.2:5061>;tag=1SIPpTag001",
    "1999 <sip:1999@127.0.0.1:5060>",
    "Alice  Smith\t<sip:a@b>;tag=x;lr",
    "Alice<sip:a@b>",
    "<sip:a@b;transport=udp>;expires=60",
    '"" <sip:a@b>',
]


@pytest.mark.parametrize("text", NAME_ADDRESSES)
def test_name_address_fast_path_matches_the_general_parser(text: str) -> None:
    clear_parse_caches()
    fast = parse_name_address(text)
    assert _shape(fast) == _shape(_parse_name_address(text, False))
    assert parse_name_address(text) is fast  # cached from now on


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='"<>;=: \tabcsip@.1-,\\?', max_size=40))
def test_name_address_parse_is_the_same_cold_and_warm(text: str) -> None:
    def attempt() -> tuple[object, ...]:
        try:
            return _shape(parse_name_address(text))
        except RemoteProtocolError as error:
            return ("error", error.reason)

    def general() -> tuple[object, ...]:
        try:
            return _shape(_parse_name_address(text, False))
        except RemoteProtocolError as error:
            return ("error", error.reason)

    clear_parse_caches()
    cold = attempt()
    assert cold == attempt()
    if cold[0] != "error":
        assert cold == general()
