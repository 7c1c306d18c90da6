"""The RFC 4475 torture messages, kept in the repository as test fixtures.

Copied byte for byte from `shared/conformance/rfc4475/` (the 50 messages of the RFC's
archive plus MANIFEST.tsv) so that a clean clone tests itself. Never edit them: a
`.dat` file is the exact octets the RFC specifies, CRLFs and binary bodies included.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "rfc4475"
