"""Originating-area designation (発信地域指定): may this caller reach this toll-free number?

Pure: a decision over a `TollFreeEntry` and a `CallerNumber`, no I/O.

Rules, in the order `check_area()` applies them (the first that decides wins):
1. 050 (IP phone) and international callers never connect (NTT West ひかりワイド:
   "050 IP phones and international calls cannot reach the number", PEERS.md §0),
   whatever the settings: `IP_PHONE_REFUSED`, `INTERNATIONAL_REFUSED`.
2. A caller who withholds the number (184, anonymous, Privacy) connects only when
   `allow_withheld`: `WITHHELD_REFUSED`. A caller without any number (`UNAVAILABLE`)
   shows no number either and follows the same toggle: `UNAVAILABLE_REFUSED`.
3. The phone-type toggles: a fixed caller needs `allow_fixed` (`FIXED_REFUSED`), a
   mobile caller `allow_mobile` (`MOBILE_REFUSED`).
4. The caller's area: an area asserted by a trusted trunk (the B2BUA passes it only
   from trusted peers; PEERS.md §3.2: the network, not the number, knows where a
   mobile is) wins over the area of a fixed number. An asserted area code without a
   prefecture gets the prefecture from the area table when all its numbers lie in one.
5. `designated_whole_country`: every domestic caller that passed 1-3 connects
   (`WHOLE_COUNTRY`).
6. A known area connects when its area code is designated (exact match: `042` does not
   designate `0422`, a charging area of its own) or its prefecture is designated
   (`IN_DESIGNATED_AREA`); otherwise `OUT_OF_AREA`.
7. No known area: a mobile caller connects (`allow_mobile` chose to accept mobiles,
   `MOBILE_ALLOWED`), as does a withheld or unavailable one (`allow_withheld`,
   `WITHHELD_ALLOWED`); a fixed number missing from the area table, a non-geographic
   (0120, 0570, ...) or unrecognised number cannot be shown to be inside the designated
   areas: `OUT_OF_AREA`.
- Option contracts (`area_designation` in `TollFreeEntry.options`) are enforced where
  settings are written (provisioning, the API); this check applies the settings the
  snapshot holds.
- Every refusal counts as `out_of_area` in the traffic statistics (指定地域外発信呼数:
  NTT refuses a non-designated area and a disallowed phone type with the same
  接続規制 announcement); `AreaDecision.reason` says which rule refused, for the log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cloudpbx.snapshot import TollFreeEntry

from .caller import CallerKind, CallerNumber, prefecture_of_area_code

__all__ = ["AreaDecision", "AreaReason", "check_area"]


class AreaReason(enum.StrEnum):
    """Why the designation check connected or refused a caller."""

    WHOLE_COUNTRY = "whole_country"
    IN_DESIGNATED_AREA = "in_designated_area"
    MOBILE_ALLOWED = "mobile_allowed"
    WITHHELD_ALLOWED = "withheld_allowed"
    OUT_OF_AREA = "out_of_area"
    FIXED_REFUSED = "fixed_refused"
    MOBILE_REFUSED = "mobile_refused"
    WITHHELD_REFUSED = "withheld_refused"
    UNAVAILABLE_REFUSED = "unavailable_refused"
    IP_PHONE_REFUSED = "ip_phone_refused"
    INTERNATIONAL_REFUSED = "international_refused"


_CONNECTING = frozenset(
    {
        AreaReason.WHOLE_COUNTRY,
        AreaReason.IN_DESIGNATED_AREA,
        AreaReason.MOBILE_ALLOWED,
        AreaReason.WITHHELD_ALLOWED,
    }
)


@dataclass(frozen=True, slots=True)
class AreaDecision:
    """The outcome of the designation check."""

    reason: AreaReason
    caller: CallerNumber
    area_code: str | None
    """The area the check used (asserted, else the fixed number's), if any."""
    prefecture: str | None
    """The JIS prefecture code the check used, if any."""

    @property
    def connect(self) -> bool:
        """True: route the call; False: refuse it (`TollFreeEntry.refusal_action`) and
        count it as `out_of_area`."""
        return self.reason in _CONNECTING


def check_area(
    entry: TollFreeEntry,
    caller: CallerNumber,
    *,
    asserted_area_code: str | None = None,
    asserted_prefecture: str | None = None,
) -> AreaDecision:
    """Decide whether `caller` may reach `entry` (see the module rules).

    Args:
        entry: the toll-free number's settings.
        caller: from `parse_caller`.
        asserted_area_code: the caller's area code (national form, `03`) as a trusted
            trunk asserted it; None when not asserted.
        asserted_prefecture: the caller's JIS prefecture code (`13`) as a trusted trunk
            asserted it; None when not asserted.
    """
    asserted = asserted_area_code is not None or asserted_prefecture is not None
    if asserted:
        area_code = asserted_area_code
        prefecture = asserted_prefecture
        if prefecture is None and area_code is not None:
            prefecture = prefecture_of_area_code(area_code)
    elif caller.kind is CallerKind.FIXED:
        area_code, prefecture = caller.area_code, caller.prefecture
    else:
        area_code = prefecture = None

    def decided(reason: AreaReason) -> AreaDecision:
        return AreaDecision(reason, caller, area_code, prefecture)

    kind = caller.kind
    if kind is CallerKind.IP_PHONE:
        return decided(AreaReason.IP_PHONE_REFUSED)
    if kind is CallerKind.INTERNATIONAL:
        return decided(AreaReason.INTERNATIONAL_REFUSED)
    if not entry.allow_withheld:
        if caller.withheld:
            return decided(AreaReason.WITHHELD_REFUSED)
        if kind is CallerKind.UNAVAILABLE:
            return decided(AreaReason.UNAVAILABLE_REFUSED)
    if kind is CallerKind.FIXED and not entry.allow_fixed:
        return decided(AreaReason.FIXED_REFUSED)
    if kind is CallerKind.MOBILE and not entry.allow_mobile:
        return decided(AreaReason.MOBILE_REFUSED)
    if entry.designated_whole_country:
        return decided(AreaReason.WHOLE_COUNTRY)
    if area_code is not None or prefecture is not None:
        if area_code in entry.designated_area_codes or prefecture in entry.designated_prefectures:
            return decided(AreaReason.IN_DESIGNATED_AREA)
        return decided(AreaReason.OUT_OF_AREA)
    if kind is CallerKind.MOBILE:
        return decided(AreaReason.MOBILE_ALLOWED)
    if caller.withheld or kind is CallerKind.UNAVAILABLE:
        return decided(AreaReason.WITHHELD_ALLOWED)
    return decided(AreaReason.OUT_OF_AREA)
