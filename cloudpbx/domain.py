"""Value types shared by the store, the snapshot and provisioning: pure, stdlib only.

Rules:
- Enum values are the strings stored in the database and written in provisioning files;
  renaming a value needs a migration.
- `DigestAlgorithm` values are spelled as RFC 7616 §6.1 names them in the `algorithm`
  parameter ("MD5", "SHA-256"); only the non-session variants are offered.
- HA1 (RFC 7616 §3.4.2, RFC 2617 §3.2.2.2) is the hex digest of `username:realm:password`
  with the algorithm's hash, lower case. It is the only secret we store: a plain password
  is hashed at the edge (provisioning, API) and never persisted.
- The username and realm are hashed exactly as given (UTF-8, no case folding), because the
  client hashes the strings it puts in its Authorization header.
"""

from __future__ import annotations

import enum
import hashlib

__all__ = ["DigestAlgorithm", "ExtensionKind", "Transport", "compute_ha1"]


class ExtensionKind(enum.StrEnum):
    """What answers for an extension number (PRODUCT.md, Part B)."""

    FIXED_IP_PHONE = "fixed_ip_phone"
    """A SIP device that registers to the switch (or has a static contact)."""
    MOBILE = "mobile"
    """A mobile line reached through the mobile-network trunk (not provisioned yet)."""
    CUSTOMER_PBX = "customer_pbx"
    """A number behind a customer's PBX, reached over its trunk (not provisioned yet)."""


class DigestAlgorithm(enum.StrEnum):
    """Digest algorithms an extension may be challenged with (RFC 7616 §6.1 names)."""

    SHA_256 = "SHA-256"
    MD5 = "MD5"


class Transport(enum.StrEnum):
    """SIP transport towards a peer (RFC 3261 §18)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


_HASH_NAME = {DigestAlgorithm.MD5: "md5", DigestAlgorithm.SHA_256: "sha256"}


def compute_ha1(username: str, realm: str, password: str, algorithm: DigestAlgorithm) -> str:
    """HA1 = H(username ":" realm ":" password), as lower-case hex (RFC 7616 §3.4.2).

    Returns:
        32 hex digits for MD5, 64 for SHA-256.
    """
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.new(_HASH_NAME[algorithm], text).hexdigest()
