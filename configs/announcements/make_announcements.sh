#!/usr/bin/env bash
# Regenerate the switch's announcement prompts (issue 5) offline: espeak-ng speaks each
# text, sox turns it into what the media player loads.
#
# Output, next to this script (checked in, so tests and the switch never need these tools):
#   after_hours_ja.wav  after_hours_en.wav   after-hours announcement (時間外案内)
#   out_of_area_ja.wav  out_of_area_en.wav   refusal for callers outside the designated areas
#   call_restricted_ja.wav  call_restricted_en.wav   cloud PBX: a call the caller may not make
#   emergency_unavailable_ja.wav  emergency_unavailable_en.wav   cloud PBX: 110/118/119 refused
# Format: RIFF WAV, 8000 Hz, mono, 16-bit signed PCM (softswitch/media/wav.py checks it and
# softswitch/media/g711.py encodes it to PCMU or PCMA at load time). Each lasts a few seconds.
#
# Requirements: espeak-ng and sox (Debian: `apt-get install -y espeak-ng sox`). Not part of
# the Makefile or CI on purpose: the generated files are committed; run this only to change
# a text or a voice:
#     bash configs/announcements/make_announcements.sh
#
# Japanese: espeak-ng's `ja` voice reads kana only; kanji come out as "Chinese letter"
# (see shared/docs/PEERS.md §4.2). The Japanese texts below are therefore written in
# hiragana, with the intended kanji wording in a comment above each; the topic particle
# は is spelled わ as it is pronounced (the voice reads は as "ha"). Spaces mark phrase
# breaks for the synthesizer. The voice is robotic: a customer who wants a natural prompt
# replaces the WAV with a studio recording in the same format.
#
# Pipeline per file: espeak-ng (22,050 Hz, 16-bit) -> sox: 0.3 s leading / 0.5 s trailing
# silence, normalise to -3 dBFS, resample to 8 kHz mono 16-bit, no dither (-D, so a rerun
# with the same tool versions produces identical bytes).
set -euo pipefail

cd "$(dirname "$0")"

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y espeak-ng sox" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# make NAME VOICE SPEED TEXT
make() {
    local name="$1" voice="$2" speed="$3" text="$4"
    espeak-ng -v "$voice" -s "$speed" -w "$work/$name.raw.wav" "$text"
    sox -D "$work/$name.raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$name.wav" \
        pad 0.3 0.5 gain -n -3
    echo "$name.wav: $(soxi -D "$name.wav") s"
}

# お電話ありがとうございます。本日の営業は終了いたしました。
# 恐れ入りますが、営業時間内に改めておかけ直しください。
make after_hours_ja ja 160 \
    "おでんわ ありがとう ございます。 ほんじつの えいぎょうわ しゅうりょう いたしました。 おそれいりますが、 えいぎょう じかんないに あらためて おかけなおし ください。"

make after_hours_en en-us 150 \
    "Thank you for calling. Our office is now closed. Please call again during our business hours. Goodbye."

# 申し訳ございません。お客様の地域からは、この番号にはおつなぎできません。
make out_of_area_ja ja 160 \
    "もうしわけ ございません。 おきゃくさまの ちいきからわ、 この ばんごうにわ おつなぎ できません。"

make out_of_area_en en-us 150 \
    "We are sorry. The number you have dialed cannot be reached from your area. Goodbye."

# Cloud PBX refusals (issue 6): a call the line or phone may not make (no external-call
# option, extension dialing from abroad).
# 申し訳ございません。この電話からは、おかけになれません。
make call_restricted_ja ja 160 \
    "もうしわけ ございません。 この でんわからわ、 おかけに なれません。"

make call_restricted_en en-us 150 \
    "We are sorry. This call cannot be made from your phone. Goodbye."

# Emergency numbers from a phone the switch cannot give a callback number and location for.
# 緊急通報は、この電話からはおかけになれません。携帯電話か固定電話からおかけください。
make emergency_unavailable_ja ja 160 \
    "きんきゅう つうほうわ、 この でんわからわ おかけに なれません。 けいたい でんわか こてい でんわから おかけ ください。"

make emergency_unavailable_en en-us 150 \
    "Emergency calls cannot be made from this phone. Please call from a mobile phone or a fixed line."

# Voicemail greeting (issue 6 item 4), followed by the tone after which the switch records:
# 0.4 s of 1 kHz at -9 dBFS, then 0.2 s of silence.
# ただいま電話に出ることができません。発信音のあとに、メッセージをどうぞ。
beep() {
    local name="$1"
    sox -n -r 8000 -c 1 -b 16 -e signed-integer "$work/beep.wav" synth 0.4 sine 1000 gain -9 pad 0 0.2
    sox -D "$name.wav" "$work/beep.wav" "$work/$name.beep.wav"
    mv "$work/$name.beep.wav" "$name.wav"
    echo "$name.wav: $(soxi -D "$name.wav") s with the tone"
}
make voicemail_greeting_ja ja 170 \
    "ただいま でんわに でることが できません。 はっしんおんの あとに、 めっせーじを どうぞ。"
beep voicemail_greeting_ja

make voicemail_greeting_en en-us 160 \
    "Nobody can take your call. Please leave a message after the tone."
beep voicemail_greeting_en
