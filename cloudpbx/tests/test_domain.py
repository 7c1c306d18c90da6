"""HA1 values against the RFC examples."""

from __future__ import annotations

import hashlib

import pytest

from cloudpbx.domain import DigestAlgorithm, compute_ha1


def test_md5_ha1_matches_rfc_2617_example() -> None:
    # RFC 2617 §3.5: Mufasa / testrealm@host.com / "Circle Of Life".
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life", DigestAlgorithm.MD5)
    assert ha1 == "939e7578ed9e3c518a452acee763bce9"


@pytest.mark.parametrize(
    ("algorithm", "hash_name", "expected_response"),
    [
        (DigestAlgorithm.MD5, "md5", "8ca523f5e9506fed4657c9700eebdbec"),
        (
            DigestAlgorithm.SHA_256,
            "sha256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ],
)
def test_ha1_gives_the_rfc_7616_example_response(
    algorithm: DigestAlgorithm, hash_name: str, expected_response: str
) -> None:
    # RFC 7616 §3.9.1: the HA1 must lead to the published response (qop=auth).
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)

    def digest(text: str) -> str:
        return hashlib.new(hash_name, text.encode()).hexdigest()

    ha2 = digest("GET:/dir/index.html")
    nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    assert digest(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}") == expected_response


def test_ha1_lengths_and_case() -> None:
    md5 = compute_ha1("1001", "127.0.0.1", "pass1001", DigestAlgorithm.MD5)
    sha256 = compute_ha1("1001", "127.0.0.1", "pass1001", DigestAlgorithm.SHA_256)
    assert len(md5) == 32 and md5 == md5.lower()
    assert len(sha256) == 64 and sha256 == sha256.lower()


def test_ha1_of_non_ascii_text_uses_utf8() -> None:
    expected = hashlib.md5("内線:realm:パス".encode()).hexdigest()
    assert compute_ha1("内線", "realm", "パス", DigestAlgorithm.MD5) == expected
