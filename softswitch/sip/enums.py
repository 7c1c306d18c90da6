"""`IdentityEnum`: an Enum whose members hash by identity.

Enum members are singletons compared by identity, but `enum.Enum.__hash__` is Python
code (`hash(self._name_)`), run on every dict lookup and tuple hash that involves a
member. The transaction tables are dicts keyed by (state, input) tuples and the timers
by `TimerName`, consulted several times per message: identity hashing (the C
`object.__hash__`) gives the same lookups without a Python call each.
"""

from __future__ import annotations

import enum

__all__ = ["IdentityEnum"]


class IdentityEnum(enum.Enum):
    """An Enum hashed by identity (consistent with Enum's identity equality)."""

    __hash__ = object.__hash__
