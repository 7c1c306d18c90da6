"""The B2BUA core: RFC 3261 §12 dialogs and calls joining two legs, sans-I/O.

Like `softswitch.sip`, nothing here touches a socket or a clock: a `Call` is driven by
`SipEndpoint` events and `handle_timer(now)`, and acts only through the endpoint's
send methods. One exception, kept apart: `announcement_media` is the asyncio adapter that
plays announcements for the sans-I/O `announcement_call` (issue 5 step 5), and so is
`voicemail_media` for `voicemail_call` (issue 6 item 4), over their common part
`answered_media`; nothing imports them but `softswitch run` and their tests (and
`answered_media` only those two).

Toll-free calls (issue 5): `tollfree_routing` (admission, destinations, records),
`announcement_call` (the switch answers itself), wired in `service.CallService`.

Cloud PBX calls (issue 6): `pbx_routing` (who calls, what was dialled, where it goes and
what the callee sees; external options, emergency policy, 2in1, roaming) over
`routing` (fixed IP phones), with trunks recognised in `caller_auth`.
"""

from .call import Call, CallEnded, CallResult, CallState
from .dialog import Dialog, DialogState

__all__ = ["Call", "CallEnded", "CallResult", "CallState", "Dialog", "DialogState"]
