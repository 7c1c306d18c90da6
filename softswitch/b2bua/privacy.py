"""Caller-ID privacy a request asks for (RFC 3323, RFC 3325 §9.3). Pure: no I/O.

Shared by the toll-free routing (which callers withhold their number, for the area
check) and the cloud PBX routing (whose identity our INVITEs withhold). The 184/186
dial prefixes are read by `softswitch.tollfree.split_presentation_prefix`.

Rules:
- `privacy_values()` is every priv-value of every Privacy header of the request, lower
  case: RFC 3323 §4.2 separates them with `;` (`Privacy: id;header`); a `,` list and
  several header lines are read the same way (RFC 3261 §7.3.1). Unknown values are kept
  (the caller decides which it honours); empty ones are dropped.
- `WITHHOLDING_VALUES` are the values that ask to withhold the caller's identity from
  the callee: `id` (RFC 3325 §9.3: the asserted identity), `header` (RFC 3323 §4.2:
  headers that would identify the user, From among them) and `user` (§4.2: user-level
  privacy, e.g. an anonymous From).
- `ANONYMOUS_FROM` is the From a privacy service puts instead of the caller's (RFC 3323
  §4.1.1.3: display name `Anonymous`, URI `sip:anonymous@anonymous.invalid`).
- `anonymous_from()`: the request's From is already anonymous (user `anonymous`, or the
  host `anonymous.invalid`): a UA that wants user-level privacy writes it so (RFC 3323
  §4.1.1.3), some without any Privacy header.
"""

from __future__ import annotations

from softswitch.sip.message import Request
from softswitch.sip.uri import SipUri

__all__ = ["ANONYMOUS_FROM", "WITHHOLDING_VALUES", "anonymous_from", "privacy_values"]

ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'
"""RFC 3323 §4.1.1.3: the From of a request whose caller withholds their identity."""
WITHHOLDING_VALUES = frozenset({"id", "header", "user"})
"""Privacy values that withhold the caller's identity (module rules)."""


def privacy_values(request: Request) -> frozenset[str]:
    """The priv-values of `request`'s Privacy headers, lower case (module rules)."""
    return frozenset(
        token.strip().lower()
        for value in request.headers.get_all("privacy")
        for part in value.split(",")
        for token in part.split(";")
        if token.strip()
    )


def anonymous_from(request: Request) -> bool:
    """True when `request`'s From is anonymous already (module rules)."""
    uri = request.from_address.uri
    if not isinstance(uri, SipUri):
        return False
    return (uri.user or "").lower() == "anonymous" or uri.host.lower() == "anonymous.invalid"
