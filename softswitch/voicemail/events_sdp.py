"""RFC 4733 telephone-event in the SDP answer of a voicemail call. Pure.

Rules:
- `softswitch.media.answer_offer` answers one codec (announcements only play). A
  mailbox session also receives DTMF as RFC 4733 events: when the offered stream maps a
  payload type to `telephone-event/8000` (RFC 4733 §7.1.1), the answer keeps that
  payload type (RFC 3264 §6.1: the answer uses the offer's numbers) in its m= line with
  `a=rtpmap:<pt> telephone-event/8000` and `a=fmtp:<pt> 0-15` (the DTMF events,
  §3.2); otherwise the answer is unchanged and no events will come.
"""

from __future__ import annotations

import dataclasses

from softswitch.media.sdp import Answer, Attribute, SdpError, parse_sdp

__all__ = ["TELEPHONE_EVENT", "with_telephone_event"]

TELEPHONE_EVENT = "telephone-event"


def with_telephone_event(offer: bytes, answer: Answer) -> tuple[bytes, int | None]:
    """The answer's SDP with the offer's telephone-event added, and its payload type."""
    try:
        offered = parse_sdp(offer)
    except SdpError:
        return answer.sdp, None
    index = answer.media.media_index
    if index >= len(offered.media):
        return answer.sdp, None
    payload_type = next(
        (
            rtpmap.payload_type
            for rtpmap in offered.media[index].rtpmaps.values()
            if rtpmap.encoding_name.lower() == TELEPHONE_EVENT and rtpmap.clock_rate == 8000
        ),
        None,
    )
    if payload_type is None:
        return answer.sdp, None
    description = answer.description
    media = description.media[index]
    media = dataclasses.replace(
        media,
        formats=(*media.formats, str(payload_type)),
        attributes=(
            *media.attributes,
            Attribute("rtpmap", f"{payload_type} {TELEPHONE_EVENT}/8000"),
            Attribute("fmtp", f"{payload_type} 0-15"),
        ),
    )
    all_media = list(description.media)
    all_media[index] = media
    return dataclasses.replace(description, media=tuple(all_media)).to_bytes(), payload_type
