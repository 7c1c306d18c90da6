#!/usr/bin/env bash
# Regenerate the switch's announcement prompts (issue 5) offline: espeak-ng speaks each
# text, sox turns it into what the media player loads.
#
# Output, next to this script (checked in, so tests and the switch never need these tools):
#   after_hours_ja.wav  after_hours_en.wav   after-hours announcement (時間外案内)
#   out_of_area_ja.wav  out_of_area_en.wav   refusal for callers outside the designated areas
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
