"""The B2BUA core: RFC 3261 §12 dialogs and calls joining two legs, sans-I/O.

Like `softswitch.sip`, nothing here touches a socket or a clock: a `Call` is driven by
`SipEndpoint` events and `handle_timer(now)`, and acts only through the endpoint's
send methods.
"""

from .call import Call, CallEnded, CallResult, CallState
from .dialog import Dialog, DialogState

__all__ = ["Call", "CallEnded", "CallResult", "CallState", "Dialog", "DialogState"]
