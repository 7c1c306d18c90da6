"""Who a voicemail message is for, and the RFC 3842 message-summary body. Pure.

Rules:
- A mailbox is one fixed IP phone's extension: (tenant name, number), with its SIP
  domain for the Message-Account URI. Only an extension of kind `fixed_ip_phone` with
  `voicemail_enabled` has one (`mailbox_of`; PRODUCT.md Part B 4).
- `message_summary` builds the application/simple-message-summary body of RFC 3842
  §5.2: `Messages-Waiting: yes|no` (yes exactly when new messages exist, §5.2),
  `Message-Account` (the mailbox's URI), and `Voice-Message: new/old` (§5.2's
  message-context-class "voice-message", counts without the urgent part).
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudpbx.domain import ExtensionKind
from cloudpbx.snapshot import ConfigSnapshot, ExtensionEntry

__all__ = ["MESSAGE_SUMMARY_TYPE", "Mailbox", "mailbox_of", "message_summary"]

MESSAGE_SUMMARY_TYPE = "application/simple-message-summary"
"""RFC 3842 §4: the body type of message-summary NOTIFYs."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    tenant_name: str
    number: str
    domain: str

    @property
    def account_uri(self) -> str:
        """`sip:NUMBER@DOMAIN`: the extension's address-of-record (RFC 3842 §5.2)."""
        return f"sip:{self.number}@{self.domain}"

    @classmethod
    def of(cls, extension: ExtensionEntry) -> Mailbox:
        return cls(extension.tenant_name, extension.number, extension.domain)


def mailbox_of(snapshot: ConfigSnapshot, domain: str, number: str) -> Mailbox | None:
    """The mailbox of `number` in `domain`, or None (no such extension, not a fixed IP
    phone, or voicemail not enabled)."""
    extension = snapshot.extension(domain, number)
    if (
        extension is None
        or extension.kind is not ExtensionKind.FIXED_IP_PHONE
        or not extension.voicemail_enabled
    ):
        return None
    return Mailbox.of(extension)


def message_summary(mailbox: Mailbox, new: int, old: int) -> bytes:
    """The RFC 3842 §5.2 body for these counts."""
    waiting = "yes" if new > 0 else "no"
    return (
        f"Messages-Waiting: {waiting}\r\n"
        f"Message-Account: {mailbox.account_uri}\r\n"
        f"Voice-Message: {new}/{old}\r\n"
    ).encode("ascii")
