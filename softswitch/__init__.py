"""Carrier softswitch: an asyncio SIP back-to-back user agent.

`softswitch.sip` is the sans-I/O SIP core (standard library only); `softswitch.transport`
holds the thin asyncio adapters that feed it from sockets.
"""

__version__ = "0.1.0"
