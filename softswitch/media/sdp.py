"""SDP (RFC 4566) for a switch that answers a call to play audio: parse, offer, answer.

Rules:
- Sans-I/O and standard library only: bytes in, frozen dataclasses and bytes out.
- `parse_sdp` never lets anything but `SdpParseError` escape, for any input bytes. It
  follows RFC 4566 §5: `<type>=<value>` lines in UTF-8, CRLF or a bare LF (§5: parsers
  SHOULD accept LF), `v=0` first, `o=` required, a type letter it does not know makes the
  whole description invalid (§5: "MUST completely ignore any session description that
  contains a type letter that it does not understand"). Fields we do not use (i, u, e,
  p, b, z, k, r) are checked for shape only.
- Offer/answer is RFC 3264. We play an announcement, so we accept exactly one audio
  stream, RTP/AVP with PCMU or PCMA (RFC 3551 §6, 8000 Hz, one channel), picked in the
  offerer's order of preference (§5.1: the offerer lists formats by preference; §6.1:
  the answerer SHOULD keep that order). Every other m-line is rejected with port 0 and
  kept in place (§6: the answer has as many m-lines as the offer, in the same order).
- The answer's direction mirrors the offer's as §6.1 allows, for a side that only sends:
  sendrecv -> sendonly, recvonly -> sendonly, sendonly -> inactive, inactive -> inactive.
  (`LocalMedia.answer_sendrecv` answers sendrecv to a sendrecv offer instead, for
  callers behind NAT: see `softswitch.media.player` on symmetric RTP.) A connection
  address of 0.0.0.0 (the pre-RFC 3264 hold, §8.4) also means "do not send".
- No acceptable stream is `SdpNotAcceptable`, status 488 Not Acceptable Here (RFC 3261
  §21.4.26); a malformed offer is `SdpParseError`, status 400. Both are `SdpError`s and
  carry `status_code`; the B2BUA answers the INVITE with it. When the SDP came in an ACK
  (late offer: our offer went in the 200), there is nothing to answer: the B2BUA ends the
  call with BYE (RFC 3261 §13.2.2.4 allows it).
- Addresses are IP literals (the core never resolves names); a stream whose connection
  address is a name is not acceptable.
"""

from __future__ import annotations

import enum
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from softswitch.sip.flows import Address

from .g711 import Codec

__all__ = [
    "Answer",
    "Attribute",
    "ConnectionData",
    "Direction",
    "LocalMedia",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpNotAcceptable",
    "SdpParseError",
    "SessionDescription",
    "accept_answer",
    "answer_offer",
    "build_offer",
    "parse_sdp",
]

MAX_SDP_SIZE = 64 * 1024
"""Larger bodies are refused unparsed (a real offer is under 2 KiB)."""

_KNOWN_TYPES = frozenset("vosiuepcbtrzkam")
_SESSION_ONLY = frozenset("vosuepztr")
_PROTO_AVP = "RTP/AVP"


# -- errors -------------------------------------------------------------------------------
class SdpError(Exception):
    """Base of every error of this module.

    Attributes:
        status_code: the SIP final response the B2BUA sends for an SDP in an INVITE.
        reason: a short reason, for the reason phrase or a Warning header (RFC 3261 §20.43).
    """

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status_code={self.status_code})"


class SdpParseError(SdpError):
    """The body is not a valid session description (RFC 4566): 400 Bad Request."""

    status_code = 400


class SdpNotAcceptable(SdpError):
    """A valid description with nothing we can play to: 488 Not Acceptable Here."""

    status_code = 488


# -- the description ----------------------------------------------------------------------
class Direction(enum.Enum):
    """Media direction attributes (RFC 4566 §6; RFC 3264 §5.1), from the writer's side."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)


_DIRECTIONS = {direction.value: direction for direction in Direction}


@dataclass(frozen=True, slots=True)
class Origin:
    """`o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>` (§5.2)."""

    username: str
    session_id: str
    session_version: str
    net_type: str
    address_type: str
    address: str

    def line(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.session_version} "
            f"{self.net_type} {self.address_type} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class ConnectionData:
    """`c=<nettype> <addrtype> <connection-address>` (§5.7); a multicast TTL or address
    count (`/127/3`) is kept in `suffix`, not in `address`."""

    net_type: str
    address_type: str
    address: str
    suffix: str = ""

    def line(self) -> str:
        return f"c={self.net_type} {self.address_type} {self.address}{self.suffix}"

    @property
    def unspecified(self) -> bool:
        """0.0.0.0 (or ::): the legacy hold of RFC 2543, RFC 3264 §8.4."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Attribute:
    """`a=<name>` or `a=<name>:<value>` (§5.13)."""

    name: str
    value: str | None = None

    def line(self) -> str:
        return f"a={self.name}" if self.value is None else f"a={self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """`a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]` (§6)."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int | None = None

    def codec(self) -> Codec | None:
        """PCMU or PCMA at 8000 Hz, one channel; None for anything else."""
        if self.clock_rate != 8000 or self.channels not in (None, 1):
            return None
        name = self.encoding_name.upper()  # encoding names are case-insensitive (§6)
        for codec in Codec:
            if codec.encoding_name == name:
                return codec
        return None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One `m=` section (§5.14) with its own lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: ConnectionData | None = None
    attributes: tuple[Attribute, ...] = ()
    other_lines: tuple[str, ...] = ()
    """`i=`, `b=`, `k=` lines as received, kept for round trips."""

    def attribute_values(self, name: str) -> list[str | None]:
        return [attribute.value for attribute in self.attributes if attribute.name == name]

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any (the last one wins)."""
        found = None
        for attribute in self.attributes:
            if attribute.value is None and attribute.name in _DIRECTIONS:
                found = _DIRECTIONS[attribute.name]
        return found

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        maps = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = _parse_rtpmap(value)
            maps[rtpmap.payload_type] = rtpmap
        return maps

    @property
    def ptime(self) -> int | None:
        values = self.attribute_values("ptime")
        return _parse_ptime(values[-1]) if values else None

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"]
        out.extend(line for line in self.other_lines if line.startswith("i="))
        if self.connection is not None:
            out.append(self.connection.line())
        out.extend(line for line in self.other_lines if not line.startswith("i="))
        out.extend(attribute.line() for attribute in self.attributes)
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole description: session-level fields and the media sections in order."""

    origin: Origin
    session_name: str = "-"
    connection: ConnectionData | None = None
    times: tuple[tuple[int, int], ...] = ((0, 0),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    version: int = 0
    other_lines: tuple[str, ...] = ()
    """Session-level `i u e p b z k r` lines as received, in order."""

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any (§6: the media level overrides)."""
        found = None
        for attribute in self.attributes:
            if attribute.value is None and attribute.name in _DIRECTIONS:
                found = _DIRECTIONS[attribute.name]
        return found

    def media_direction(self, media: MediaDescription) -> Direction:
        """The direction in force for `media`: its own, else the session's, else sendrecv
        (RFC 3264 §5.1: sendrecv is the default)."""
        return media.direction or self.direction or Direction.SENDRECV

    def media_connection(self, media: MediaDescription) -> ConnectionData | None:
        """`c=` in force for `media` (§5.7: the media level overrides the session level)."""
        return media.connection or self.connection

    def to_bytes(self) -> bytes:
        """The description on the wire: CRLF line ends (§5), UTF-8."""
        order = "iuepbzkr"  # RFC 4566 §5 field order for the session-level extras
        extras = sorted(self.other_lines, key=lambda line: order.index(line[0]))
        lines = [f"v={self.version}", self.origin.line(), f"s={self.session_name}"]
        lines.extend(line for line in extras if line[0] in "iuep")
        if self.connection is not None:
            lines.append(self.connection.line())
        lines.extend(line for line in extras if line[0] == "b")
        for start, stop in self.times:
            lines.append(f"t={start} {stop}")
        lines.extend(line for line in extras if line[0] in "rzk")
        lines.extend(attribute.line() for attribute in self.attributes)
        for media in self.media:
            lines.extend(media.lines())
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# -- parsing ------------------------------------------------------------------------------
def _parse_int(text: str, what: str, limit: int) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > limit:
        raise SdpParseError(f"invalid {what} {text!r}")
    return int(text)


def _parse_rtpmap(value: str | None) -> RtpMap:
    if value is None:
        raise SdpParseError("a=rtpmap without a value")
    payload_type, _, encoding = value.strip().partition(" ")
    parts = encoding.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SdpParseError(f"invalid a=rtpmap:{value}")
    return RtpMap(
        payload_type=_parse_int(payload_type, "rtpmap payload type", 127),
        encoding_name=parts[0],
        clock_rate=_parse_int(parts[1], "rtpmap clock rate", 10**9),
        channels=_parse_int(parts[2], "rtpmap channels", 255) if len(parts) == 3 else None,
    )


def _parse_ptime(value: str | None) -> int:
    # RFC 4566 §6: a=ptime:<packet time> in milliseconds; some peers write "20.0".
    try:
        ptime = float(value or "")
    except ValueError:
        raise SdpParseError(f"invalid a=ptime:{value}") from None
    if not 0 < ptime <= 1000:
        raise SdpParseError(f"invalid a=ptime:{value}")
    return round(ptime)


def _parse_connection(value: str) -> ConnectionData:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError(f"invalid c={value}")
    net_type, address_type, address = parts
    if net_type != "IN" or address_type not in ("IP4", "IP6"):
        raise SdpParseError(f"unsupported c={value} (need IN IP4 or IN IP6)")
    # §5.7: IP4 multicast carries "/<ttl>[/<count>]", IP6 multicast "/<count>"
    address, slash, rest = address.partition("/")
    suffix = slash + rest
    if not address:
        raise SdpParseError(f"invalid c={value}")
    return ConnectionData(net_type, address_type, address, suffix)


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpParseError(f"invalid m={value} (need media, port, proto and a format)")
    media, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    return MediaDescription(
        media=media,
        port=_parse_int(port_text, "m= port", 65535),
        port_count=_parse_int(count_text, "m= port count", 65535) if slash else None,
        proto=proto,
        formats=tuple(formats),
    )


def _split_lines(body: bytes | str) -> list[tuple[str, str]]:
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_SDP_SIZE:
            raise SdpParseError(f"session description over {MAX_SDP_SIZE} octets")
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise SdpParseError("session description is not UTF-8") from None
    elif isinstance(body, str):
        if len(body) > MAX_SDP_SIZE:
            raise SdpParseError(f"session description over {MAX_SDP_SIZE} characters")
        text = body
    else:
        raise SdpParseError(f"session description must be bytes or str, not {type(body)}")
    records = []
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue  # blank lines (a trailing CRLF, a stray empty line) carry nothing
        if len(line) < 2 or line[1] != "=" or line[0] not in _KNOWN_TYPES:
            raise SdpParseError(f"invalid SDP line {line[:40]!r}")
        records.append((line[0], line[2:]))
    return records


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Parse a session description (RFC 4566).

    Raises:
        SdpParseError: anything malformed; nothing else escapes for any input.
    """
    try:
        return _parse(_split_lines(body))
    except SdpError:
        raise
    except Exception as error:  # a parser bug must not crash the call: report it typed
        raise SdpParseError(f"unparsable session description ({error!r})") from None


def _parse(records: list[tuple[str, str]]) -> SessionDescription:
    if not records or records[0] != ("v", "0"):
        raise SdpParseError("session description must start with v=0 (RFC 4566 §5.1)")
    origin: Origin | None = None
    session_name = "-"
    session_connection: ConnectionData | None = None
    times: list[tuple[int, int]] = []
    session_attributes: list[Attribute] = []
    session_other: list[str] = []
    media: list[MediaDescription] = []
    # the m= section being read: its line and what follows it
    current: MediaDescription | None = None
    current_connection: ConnectionData | None = None
    current_attributes: list[Attribute] = []
    current_other: list[str] = []

    def close_media() -> None:
        if current is not None:
            media.append(
                MediaDescription(
                    media=current.media,
                    port=current.port,
                    port_count=current.port_count,
                    proto=current.proto,
                    formats=current.formats,
                    connection=current_connection,
                    attributes=tuple(current_attributes),
                    other_lines=tuple(current_other),
                )
            )

    for kind, value in records[1:]:
        if kind == "m":
            close_media()
            current = _parse_media_line(value)
            current_connection, current_attributes, current_other = None, [], []
        elif kind == "v":
            raise SdpParseError("v= may appear only once, first")
        elif current is not None and kind in _SESSION_ONLY:
            raise SdpParseError(f"{kind}= is not allowed in a media section (RFC 4566 §5)")
        elif kind == "o":
            if origin is not None:
                raise SdpParseError("more than one o= line")
            parts = value.split()
            if len(parts) != 6:
                raise SdpParseError(f"invalid o={value}")
            origin = Origin(*parts)
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _parse_connection(value)
            if current is None:
                if session_connection is not None:
                    raise SdpParseError("more than one session-level c= line")
                session_connection = connection
            elif current_connection is None:
                current_connection = connection
            # several media-level c= lines are for multicast layers; the first one is used
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2:
                raise SdpParseError(f"invalid t={value}")
            times.append(
                (_parse_int(parts[0], "t= start", 2**64), _parse_int(parts[1], "t= stop", 2**64))
            )
        elif kind == "a":
            name, colon, attribute_value = value.partition(":")
            if not name or " " in name:
                raise SdpParseError(f"invalid a={value}")
            attribute = Attribute(name, attribute_value if colon else None)
            if name == "rtpmap":
                _parse_rtpmap(attribute.value)  # malformed is malformed, used or not
            elif name == "ptime":
                _parse_ptime(attribute.value)
            (current_attributes if current is not None else session_attributes).append(attribute)
        else:  # i u e p b z k r: kept, not interpreted
            (current_other if current is not None else session_other).append(f"{kind}={value}")
    close_media()
    if origin is None:
        raise SdpParseError("session description has no o= line (RFC 4566 §5.2)")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=session_connection,
        times=tuple(times) or ((0, 0),),
        attributes=tuple(session_attributes),
        media=tuple(media),
        other_lines=tuple(session_other),
    )


# -- offer/answer -------------------------------------------------------------------------
def _new_session_id() -> int:
    # RFC 4566 §5.2: sess-id is a numeric string unique to the originator; 62 random bits
    # keep it positive and within any signed 64-bit parser.
    return secrets.randbits(62)


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """Our side of the media session.

    Attributes:
        address: the IP literal the player's socket is bound to, put in `o=` and `c=`.
        port: the player's RTP port, put in the accepted `m=` line.
        codecs: what we accept, and in this order offer (late offer). PCMU first: the
            RFC 3551 default and what every peer supports.
        ptime: our packet time in milliseconds (RFC 4566 §6 a=ptime).
        session_id, session_version: `o=` fields (RFC 4566 §5.2); a re-answer in the same
            dialog keeps the id and increments the version (RFC 3264 §8).
        username: `o=` username; "-" when there is no user (RFC 4566 §5.2).
        answer_sendrecv: answer sendrecv (not sendonly) to a sendrecv offer, so a
            compliant caller behind NAT sends RTP that the player can latch onto (symmetric
            RTP). What arrives is counted and dropped either way.
    """

    address: str
    port: int
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA)
    ptime: int = 20
    session_id: int = field(default_factory=_new_session_id)
    session_version: int = 1
    username: str = "-"
    answer_sendrecv: bool = False

    def _origin(self) -> Origin:
        return Origin(
            self.username, str(self.session_id), str(self.session_version), "IN",
            _address_type(self.address), self.address,
        )

    def _connection(self) -> ConnectionData:
        return ConnectionData("IN", _address_type(self.address), self.address)


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What the player needs after offer/answer.

    Attributes:
        codec: PCMU or PCMA.
        payload_type: the RTP payload type to send: the number the peer used for the codec
            (0 or 8, or a dynamic number the peer mapped with a=rtpmap; RFC 3264 §6.1 keeps
            the offer's numbers).
        remote: where to send RTP: the peer's `c=` address and `m=` port.
        send: whether we may send at all (False: the peer holds or refused media; the
            player then sends nothing but still takes the announcement's time).
        direction: our direction in the answer (or the one we offered).
        ptime: our packet duration in milliseconds.
        media_index: the position of the accepted m-line.
    """

    codec: Codec
    payload_type: int
    remote: Address
    send: bool
    direction: Direction
    ptime: int = 20
    media_index: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """The result of `answer_offer`: the SDP body for the 200 OK and the negotiated media."""

    sdp: bytes
    media: NegotiatedMedia
    description: SessionDescription


def _address_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _ip_literal(connection: ConnectionData) -> str:
    try:
        ip = ipaddress.ip_address(connection.address)
    except ValueError:
        raise SdpNotAcceptable(
            f"connection address {connection.address!r} is not an IP literal"
        ) from None
    if (ip.version == 6) != (connection.address_type == "IP6"):
        raise SdpNotAcceptable(
            f"connection address {connection.address} is not IN {connection.address_type}"
        )
    if ip.is_multicast:
        raise SdpNotAcceptable("multicast connection addresses are not supported")
    return str(ip)


def _choose_format(
    media: MediaDescription, accepted: Iterable[Codec]
) -> tuple[Codec, int] | None:
    """The first of the peer's formats that is one of `accepted` (RFC 3264 §6.1)."""
    allowed = set(accepted)
    rtpmaps = media.rtpmaps
    for fmt in media.formats:
        if not fmt.isascii() or not fmt.isdigit() or int(fmt) > 127:
            continue  # RTP/AVP formats are payload type numbers (RFC 4566 §5.14)
        payload_type = int(fmt)
        rtpmap = rtpmaps.get(payload_type)
        codec = rtpmap.codec() if rtpmap is not None else Codec.from_payload_type(payload_type)
        if codec is not None and codec in allowed:
            return codec, payload_type
    return None


def _answer_direction(offered: Direction, local: LocalMedia) -> Direction:
    # RFC 3264 §6.1: sendonly -> recvonly or inactive; recvonly -> sendonly or inactive;
    # inactive -> inactive; sendrecv -> any. We never want to receive.
    if offered is Direction.SENDRECV:
        return Direction.SENDRECV if local.answer_sendrecv else Direction.SENDONLY
    if offered is Direction.RECVONLY:
        return Direction.SENDONLY
    return Direction.INACTIVE


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its media type and transport, port 0, and at
    # least one of the offered formats.
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats)


def _audio_lines(codec: Codec, payload_type: int, local: LocalMedia) -> list[Attribute]:
    return [
        Attribute("rtpmap", f"{payload_type} {codec.encoding_name}/{codec.clock_rate}"),
        Attribute("ptime", str(local.ptime)),
    ]


def answer_offer(offer: bytes | str | SessionDescription, local: LocalMedia) -> Answer:
    """Answer an offer (RFC 3264 §6) with one audio stream we send on.

    Args:
        offer: the INVITE's (or re-INVITE's) SDP body, or an already parsed description.
        local: our address, port, codecs and `o=` identity.

    Raises:
        SdpParseError: the offer is malformed (400).
        SdpNotAcceptable: no audio RTP/AVP stream with PCMU or PCMA (488).
    """
    description = offer if isinstance(offer, SessionDescription) else parse_sdp(offer)
    try:
        return _answer(description, local)
    except SdpError:
        raise
    except Exception as error:  # a hand-built description can hold anything
        raise SdpParseError(f"cannot answer this offer ({error!r})") from None


def _answer(description: SessionDescription, local: LocalMedia) -> Answer:
    if not description.media:
        raise SdpNotAcceptable("offer has no m= line")
    chosen: NegotiatedMedia | None = None
    media_out: list[MediaDescription] = []
    refusals: list[str] = []
    for index, media in enumerate(description.media):
        if chosen is not None or media.port == 0 or media.media != "audio":
            media_out.append(_rejected(media))
            continue
        if media.proto.upper() != _PROTO_AVP:
            refusals.append(f"transport {media.proto} not supported")
            media_out.append(_rejected(media))
            continue
        choice = _choose_format(media, local.codecs)
        if choice is None:
            refusals.append(f"no common codec in formats {' '.join(media.formats)}")
            media_out.append(_rejected(media))
            continue
        connection = description.media_connection(media)
        if connection is None:
            raise SdpParseError("audio stream has no c= line (RFC 4566 §5.7)")
        host = _ip_literal(connection)
        codec, payload_type = choice
        offered = description.media_direction(media)
        direction = _answer_direction(offered, local)
        if connection.unspecified:
            direction = Direction.INACTIVE  # RFC 3264 §8.4: the legacy hold
        chosen = NegotiatedMedia(
            codec=codec,
            payload_type=payload_type,
            remote=(host, media.port),
            send=direction.sends,
            direction=direction,
            ptime=local.ptime,
            media_index=index,
        )
        media_out.append(
            MediaDescription(
                media="audio",
                port=local.port,
                proto=media.proto,
                formats=(str(payload_type),),
                attributes=(*_audio_lines(codec, payload_type, local), Attribute(direction.value)),
            )
        )
    if chosen is None:
        raise SdpNotAcceptable("; ".join(refusals) or "offer has no audio stream")
    answer = SessionDescription(
        origin=local._origin(),
        session_name="-",
        connection=local._connection(),
        times=description.times[:1],  # RFC 3264 §6: t= of the answer MUST equal the offer's
        media=tuple(media_out),
    )
    return Answer(sdp=answer.to_bytes(), media=chosen, description=answer)


def build_offer(local: LocalMedia) -> bytes:
    """Our offer for a late-offer INVITE (no SDP in it): goes in the 200 OK, the ACK
    carries the answer (RFC 3261 §13.2.1, RFC 3264 §5). One audio stream, `sendonly`
    (we only play), our codecs in our order of preference (RFC 3264 §5.1)."""
    formats = tuple(str(codec.payload_type) for codec in local.codecs)
    attributes = [
        Attribute("rtpmap", f"{codec.payload_type} {codec.encoding_name}/{codec.clock_rate}")
        for codec in local.codecs
    ]
    attributes += [Attribute("ptime", str(local.ptime)), Attribute(Direction.SENDONLY.value)]
    offer = SessionDescription(
        origin=local._origin(),
        session_name="-",
        connection=local._connection(),
        media=(
            MediaDescription(
                media="audio", port=local.port, proto=_PROTO_AVP, formats=formats,
                attributes=tuple(attributes),
            ),
        ),
    )
    return offer.to_bytes()


def accept_answer(answer: bytes | str | SessionDescription, local: LocalMedia) -> NegotiatedMedia:
    """Read the answer (from the ACK) to an offer made by `build_offer(local)` (RFC 3264 §7).

    Raises:
        SdpParseError: the answer is malformed.
        SdpNotAcceptable: it rejected our stream, or names none of our codecs. Nothing can
            be answered to an ACK: the B2BUA ends the call with BYE.
    """
    description = answer if isinstance(answer, SessionDescription) else parse_sdp(answer)
    try:
        return _accept(description, local)
    except SdpError:
        raise
    except Exception as error:
        raise SdpParseError(f"cannot read this answer ({error!r})") from None


def _accept(description: SessionDescription, local: LocalMedia) -> NegotiatedMedia:
    if len(description.media) != 1:
        # RFC 3264 §6: the answer has exactly as many m-lines as the offer (ours has one)
        raise SdpNotAcceptable(f"answer has {len(description.media)} m= lines, offer had 1")
    media = description.media[0]
    if media.port == 0:
        raise SdpNotAcceptable("answer rejected the audio stream (port 0)")
    if media.media != "audio" or media.proto.upper() != _PROTO_AVP:
        raise SdpNotAcceptable(f"answer m={media.media} {media.proto} does not match the offer")
    choice = _choose_format(media, local.codecs)
    if choice is None:
        raise SdpNotAcceptable(f"answer formats {' '.join(media.formats)} are none of ours")
    connection = description.media_connection(media)
    if connection is None:
        raise SdpParseError("audio stream has no c= line (RFC 4566 §5.7)")
    host = _ip_literal(connection)
    codec, payload_type = choice
    # We offered sendonly; the answer says recvonly (or inactive). A sendrecv answer is
    # not allowed by RFC 3264 §6.1 but still means the peer receives, so we send.
    peer = description.media_direction(media)
    send = peer.receives and not connection.unspecified
    return NegotiatedMedia(
        codec=codec,
        payload_type=payload_type,
        remote=(host, media.port),
        send=send,
        direction=Direction.SENDONLY if send else Direction.INACTIVE,
        ptime=local.ptime,
        media_index=0,
    )
