"""The asyncio adapter of voicemail calls: greeting out, message in, files and rows saved.

Thin like `announcement_media` (STYLE.md principle 6): the SIP decisions are the
`VoicemailCall`'s, the recording decisions the pure `softswitch.voicemail.Recorder`'s
and `softswitch.media.playout.Playout`'s; this module binds sockets, arms one loop timer
per call, moves datagrams, and reports back to the `CallService`. Binding, stopping and
reporting follow the `answered_media` rules it shares with `announcement_media`.

Rules:
- `VoicemailMedia(loop, calls, greetings, host, ports, store, after)` enables voicemail
  on `calls` (`CallService.enable_voicemail`). `pump()` must run after every input the
  service handled (the `softswitch run` call timer calls it from its `_after`): it
  drains `calls.next_voicemail_effect()`.
- `OpenRecorder`: a task binds a `VoicemailSession` on `host` (an even RTP port from
  `ports`, RFC 3550 §11), then `calls.voicemail_media_opened(call_id, address, now)`,
  or None on an `OSError`. A `StopRecorder` while binding closes it once bound.
- `PlayGreeting`: the greeting is paced by a `Playout` (20 ms packets, symmetric-RTP
  latching); its end is reported with `calls.greeting_finished`. An unknown greeting
  name falls back to `voicemail_greeting_ja`, else the greeting is skipped.
- `StartRecording`: datagrams go to a `Recorder` (`now` = `loop.time()`); when it ends
  by silence or maximum length, `calls.recording_finished` (the call sends BYE).
- `StopRecorder`: the socket closes; a recording holding voice becomes a message: the
  WAV file and the row are written by `store.save` on a worker thread (never on the
  loop), then `on_saved(mailbox, counts)` runs on the loop (MWI NOTIFYs). A message
  without any voiced packet is dropped (counted `messages_empty`). A failing store is
  logged and counted (`save_failures`); calls go on.
- `StartMailbox` (the owner dialled the feature code): the mailbox's messages are listed
  (worker thread) into a pure `MailboxMenu`; RFC 4733 events of the negotiated payload
  type become keys (`DtmfReceiver`); each `PlayMessage` reads the WAV on a worker thread
  and plays it (a newer action discards a read still in progress), `MarkHeard` and
  `DeleteMessage` change the store on a worker thread and then `on_saved` (MWI), and
  `Finish` reports `calls.recording_finished` (the call sends BYE). The menu's
  key timeout is one loop timer per call.
- `close()` stops every session (shutdown); recordings in progress are saved first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.voicemail import (
    MailboxCounts,
    MessageInfo,
    add_message,
    delete_message,
    list_messages,
    mailbox_counts,
    mark_heard,
    message_path,
    remove_file,
)
from softswitch.media import Announcement, NegotiatedMedia, RtpPortAllocator, load_announcement
from softswitch.media.player import bind_rtp_endpoint
from softswitch.media.playout import Playout, PlayoutState
from softswitch.media.rtp import RtpError, RtpPacket
from softswitch.media.wav import WavFormatError, read_wav, write_wav
from softswitch.sip.flows import Address
from softswitch.transport.udp import address_from_socket
from softswitch.voicemail.dtmf import DtmfReceiver
from softswitch.voicemail.mailbox import Mailbox
from softswitch.voicemail.menu import (
    DEFAULT_KEY_TIMEOUT,
    DeleteMessage,
    Finish,
    MailboxMenu,
    MarkHeard,
    PlayMessage,
)
from softswitch.voicemail.recording import Recorder, RecordingConfig, RecordingEnd

from .answered_media import AnsweredCallMedia
from .service import CallService
from .voicemail_call import (
    OpenRecorder,
    PlayGreeting,
    StartMailbox,
    StartRecording,
    StopRecorder,
    VoicemailEffect,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cloudpbx.notify import ChangeNotifier

__all__ = [
    "DatabaseMessageStore",
    "MailboxCountCache",
    "MessageStore",
    "VoicemailCalls",
    "VoicemailMedia",
    "VoicemailSession",
    "load_greetings",
    "start_voicemail",
]

logger = logging.getLogger(__name__)

DEFAULT_GREETING = "voicemail_greeting_ja"


class VoicemailCalls(Protocol):
    """The call service's side of this adapter (`CallService` implements it)."""

    def enable_voicemail(self) -> None: ...

    def next_voicemail_effect(self) -> VoicemailEffect | None: ...

    def voicemail_media_opened(self, call_id: str, address: Address | None, now: float) -> None: ...

    def greeting_finished(self, call_id: str, now: float) -> None: ...

    def recording_finished(self, call_id: str, now: float) -> None: ...


class MessageStore(Protocol):
    """Where messages go; every method runs on a worker thread."""

    def save(self, message: MessageInfo, pcm: bytes) -> MailboxCounts:
        """Write the WAV and the row; return the mailbox's counts after it."""
        ...

    def messages(self, mailbox: Mailbox) -> list[MessageInfo]:
        """The mailbox's messages, oldest first."""
        ...

    def audio(self, message: MessageInfo) -> bytes:
        """The message's linear PCM (16-bit, 8 kHz, mono)."""
        ...

    def mark_heard(self, mailbox: Mailbox, message_id: str) -> MailboxCounts: ...

    def delete(self, mailbox: Mailbox, message_id: str) -> MailboxCounts: ...


class DatabaseMessageStore:
    """Messages as files under `directory` and rows in the config store
    (`cloudpbx.voicemail` rules: file first, then row)."""

    def __init__(self, sessions: sessionmaker[Session], directory: Path) -> None:
        self._sessions = sessions
        self.directory = directory

    def save(self, message: MessageInfo, pcm: bytes) -> MailboxCounts:
        write_wav(self.directory / message.file_name, pcm)
        with self._sessions.begin() as session:
            if not add_message(session, message):
                logger.warning("voicemail for %s: the mailbox is gone", message.extension_number)
            return mailbox_counts(session, message.tenant_name, message.extension_number)

    def messages(self, mailbox: Mailbox) -> list[MessageInfo]:
        with self._sessions() as session:
            return list_messages(session, mailbox.tenant_name, mailbox.number)

    def audio(self, message: MessageInfo) -> bytes:
        return read_wav(self.directory / message.file_name).pcm

    def mark_heard(self, mailbox: Mailbox, message_id: str) -> MailboxCounts:
        with self._sessions.begin() as session:
            mark_heard(session, mailbox.tenant_name, mailbox.number, message_id)
            return mailbox_counts(session, mailbox.tenant_name, mailbox.number)

    def delete(self, mailbox: Mailbox, message_id: str) -> MailboxCounts:
        with self._sessions.begin() as session:
            file_name = delete_message(session, mailbox.tenant_name, mailbox.number, message_id)
        if file_name is not None:
            remove_file(self.directory, file_name)  # cloudpbx.voicemail: after the commit
        with self._sessions() as session:
            return mailbox_counts(session, mailbox.tenant_name, mailbox.number)


@dataclass(slots=True)
class _Message:
    mailbox: Mailbox
    caller: str
    call_id: str
    received_at: float
    recorder: Recorder


@dataclass(slots=True)
class _Listening:
    """A mailbox session (`StartMailbox`)."""

    mailbox: Mailbox
    media: NegotiatedMedia
    menu: MailboxMenu
    messages: dict[str, MessageInfo]
    generation: int = 0
    """Bumped by every new playback: a WAV read for an older one is discarded."""
    timer: asyncio.TimerHandle | None = None


class VoicemailSession(asyncio.DatagramProtocol):
    """One voicemail call's RTP socket: the greeting out, then the message in."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._playout: Playout | None = None
        self._on_greeting_end: Callable[[], None] | None = None
        self.recorder: Recorder | None = None
        self._on_recording_end: Callable[[RecordingEnd], None] | None = None
        self._dtmf: DtmfReceiver | None = None
        self._on_key: Callable[[str], None] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, ports: RtpPortAllocator | None) -> VoicemailSession:
        """Bind on `host`, an even port of `ports` (None: ephemeral, tests).

        Raises:
            OSError: nothing could be bound.
        """
        return await bind_rtp_endpoint(cls, host, ports)

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise RuntimeError("RTP socket is closed")
        return address_from_socket(self._transport.get_extra_info("sockname"))

    def play(self, media: NegotiatedMedia, payload: bytes, on_end: Callable[[], None]) -> None:
        """Send `payload` (encoded in `media.codec`) paced; `on_end()` once played."""
        if self.closed:
            return
        self._cancel_timer()  # a newer playback replaces the one in progress
        self._playout = Playout(media, payload, start=self._loop.time(), tail=0.1)
        self._on_greeting_end = on_end
        self._on_timer()

    def stop_playing(self) -> None:
        """Stop the playback in progress (its `on_end` is not called)."""
        self._cancel_timer()
        self._on_greeting_end = None
        if self._playout is not None:
            self._playout.stop()

    def listen(self, payload_type: int, on_key: Callable[[str], None]) -> None:
        """Report each RFC 4733 DTMF key of `payload_type` with `on_key(key)`."""
        self._dtmf = DtmfReceiver(payload_type)
        self._on_key = on_key

    def record(self, recorder: Recorder, on_end: Callable[[RecordingEnd], None]) -> None:
        """Hand every later datagram to `recorder`; `on_end(reason)` when it ends itself."""
        if self.closed:
            return
        self._cancel_timer()
        self._playout = None
        self.recorder = recorder
        self._on_recording_end = on_end
        self._arm(recorder.get_timer())

    def stop(self) -> Recorder | None:
        """Close the socket (idempotent); the recorder, stopped, if recording began."""
        self.closed = True
        self._cancel_timer()
        if self.recorder is not None:
            self.recorder.stop(self._loop.time())
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
        return self.recorder

    # -- pacing --------------------------------------------------------------------
    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, deadline: float | None) -> None:
        self._cancel_timer()
        if deadline is not None and not self.closed:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        recorder = self.recorder
        if recorder is not None:
            recorder.handle_timer(now)
            self._check_recording()
            return
        playout = self._playout
        if playout is None or self.closed:
            return
        for data, remote in playout.datagrams_to_send(now):
            if self._transport is not None:
                self._transport.sendto(data, remote)
        if playout.state is PlayoutState.FINISHED:
            callback, self._on_greeting_end = self._on_greeting_end, None
            if callback is not None:
                callback()
        else:
            self._arm(playout.get_timer())

    def _check_recording(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        if recorder.ended is not None:
            self._cancel_timer()
            callback, self._on_recording_end = self._on_recording_end, None
            if callback is not None:
                callback(recorder.ended)
        elif self._timer is None:
            self._arm(recorder.get_timer())

    # -- asyncio.DatagramProtocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.recorder is not None:
            self.recorder.receive_datagram(data, self._loop.time())
            if self.recorder.ended is not None:
                self._check_recording()
            return
        if self._playout is not None:
            self._playout.receive_datagram(data, address_from_socket(addr))
        if self._dtmf is not None and self._on_key is not None:
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                return
            key = self._dtmf.receive(packet)
            if key is not None:
                self._on_key(key)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors while sending the greeting: the SIP side decides the end

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class VoicemailMedia(AnsweredCallMedia[VoicemailSession]):
    """The sessions of the voicemail calls of one `CallService` (see the module rules)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        calls: VoicemailCalls,
        greetings: Mapping[str, Announcement],
        host: str,
        ports: RtpPortAllocator | None,
        store: MessageStore | None,
        after: Callable[[], None],
        *,
        on_saved: Callable[[Mailbox, MailboxCounts], None] | None = None,
        config: RecordingConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
        key_timeout: float = DEFAULT_KEY_TIMEOUT,
    ) -> None:
        super().__init__(loop, host, ports, after)
        self._calls = calls
        self._greetings = dict(greetings)
        self._store = store
        self.on_saved = on_saved
        self._config = config if config is not None else RecordingConfig()
        self._wall_clock = wall_clock
        self._messages: dict[str, _Message] = {}
        self._media: dict[str, NegotiatedMedia] = {}
        self._listening: dict[str, _Listening] = {}
        self._key_timeout = key_timeout
        self._saves: set[asyncio.Task[None]] = set()
        self.counters: Counter[str] = Counter()
        calls.enable_voicemail()

    def pump(self) -> None:
        """Carry out every pending voicemail effect of the call service."""
        while (effect := self._calls.next_voicemail_effect()) is not None:
            if isinstance(effect, OpenRecorder):
                self._open(effect.call_id)
            elif isinstance(effect, PlayGreeting):
                self._play(effect)
            elif isinstance(effect, StartRecording):
                self._record(effect)
            elif isinstance(effect, StartMailbox):
                self._spawn(self._start_mailbox(effect))
            elif isinstance(effect, StopRecorder):
                self._stop(effect.call_id)

    async def wait_saved(self) -> None:
        """Wait for the saves in progress (shutdown, tests)."""
        saves = [task for task in self._saves if not task.done()]
        if saves:
            await asyncio.gather(*saves, return_exceptions=True)

    # -- effects -------------------------------------------------------------------
    async def _bind(self) -> VoicemailSession:
        return await VoicemailSession.open(self._host, self._ports)

    def _open_failed(self, call_id: str, error: OSError) -> None:
        logger.warning("cannot open an RTP socket for voicemail %s: %s", call_id, error)

    def _media_opened(self, call_id: str, address: Address | None, now: float) -> None:
        self._calls.voicemail_media_opened(call_id, address, now)

    def _play(self, effect: PlayGreeting) -> None:
        session = self._sessions.get(effect.call_id)
        if session is None:
            return
        greeting = self._greetings.get(effect.greeting) or self._greetings.get(DEFAULT_GREETING)
        call_id = effect.call_id

        def finished() -> None:
            self._report(lambda: self._calls.greeting_finished(call_id, self._now()))

        if greeting is None:
            logger.warning("no voicemail greeting %r for %s", effect.greeting, call_id)
            self._media[call_id] = effect.media
            self._loop.call_soon(finished)
            return
        self._media[call_id] = effect.media
        session.play(effect.media, greeting.payload(effect.media.codec), finished)

    def _record(self, effect: StartRecording) -> None:
        session = self._sessions.get(effect.call_id)
        media = self._media.get(effect.call_id)
        if session is None or media is None:
            return
        recorder = Recorder(media.codec, media.payload_type, self._now(), self._config)
        self._messages[effect.call_id] = _Message(
            effect.mailbox, effect.caller, effect.call_id, self._wall_clock(), recorder
        )
        call_id = effect.call_id

        def ended(reason: RecordingEnd) -> None:
            self.counters[f"recordings_ended.{reason.value}"] += 1
            self._report(lambda: self._calls.recording_finished(call_id, self._now()))

        session.record(recorder, ended)

    def _session_stopped(self, call_id: str) -> None:
        """A recording holding voice is saved (module rules: `StopRecorder`)."""
        self._media.pop(call_id, None)
        listening = self._listening.pop(call_id, None)
        if listening is not None:
            listening.generation += 1
            if listening.timer is not None:
                listening.timer.cancel()
        message = self._messages.pop(call_id, None)
        if message is None:
            return
        if not message.recorder.has_voice:
            self.counters["messages_empty"] += 1
            return
        save = self._loop.create_task(self._save(message))
        self._saves.add(save)
        save.add_done_callback(self._saves.discard)

    async def _save(self, message: _Message) -> None:
        recorder = message.recorder
        mailbox = message.mailbox
        message_id = secrets.token_hex(16)
        info = MessageInfo(
            message_id=message_id,
            tenant_name=mailbox.tenant_name,
            extension_number=mailbox.number,
            caller=message.caller,
            call_id=message.call_id,
            received_at=message.received_at,
            duration_seconds=round(recorder.duration, 3),
            heard=False,
            file_name=message_path(mailbox.tenant_name, mailbox.number, message_id),
        )
        if self._store is None:
            return
        try:
            counts = await asyncio.to_thread(self._store.save, info, recorder.pcm())
        except Exception as error:  # module rules: a failing store never stops calls
            self.counters["save_failures"] += 1
            logger.error("cannot save the voicemail message of %s: %r", message.call_id, error)
            return
        self.counters["messages_saved"] += 1
        logger.info(
            "voicemail message %s for %s from %s: %.1f s",
            message_id,
            mailbox.account_uri,
            message.caller,
            info.duration_seconds,
        )
        if self.on_saved is not None:
            callback = self.on_saved
            self._report(lambda: callback(mailbox, counts))

    # -- the mailbox menu (listening mode) -----------------------------------------
    async def _start_mailbox(self, effect: StartMailbox) -> None:
        call_id = effect.call_id
        messages: list[MessageInfo] = []
        if self._store is not None:
            try:
                messages = await asyncio.to_thread(self._store.messages, effect.mailbox)
            except Exception as error:  # the store is down: an empty mailbox
                logger.error("cannot list the mailbox of %s: %r", call_id, error)
        session = self._sessions.get(call_id)
        if session is None:
            return  # the caller hung up meanwhile
        menu = MailboxMenu([message.message_id for message in messages], self._key_timeout)
        listening = _Listening(
            effect.mailbox, effect.media, menu, {m.message_id: m for m in messages}
        )
        self._listening[call_id] = listening
        if effect.event_payload_type is not None:
            session.listen(effect.event_payload_type, lambda key: self._on_key(call_id, key))
        menu.start(self._now())
        self._run_menu(call_id)

    def _on_key(self, call_id: str, key: str) -> None:
        listening = self._listening.get(call_id)
        if listening is None:
            return
        self.counters["dtmf_keys"] += 1
        listening.menu.press(key, self._now())
        self._run_menu(call_id)

    def _menu_timer(self, call_id: str) -> None:
        listening = self._listening.get(call_id)
        if listening is None:
            return
        listening.timer = None
        listening.menu.handle_timer(self._now())
        self._run_menu(call_id)

    def _run_menu(self, call_id: str) -> None:
        """Carry out the menu's actions, then re-arm its key timeout."""
        listening = self._listening.get(call_id)
        session = self._sessions.get(call_id)
        if listening is None or session is None:
            return
        mailbox = listening.mailbox
        store = self._store
        while (action := listening.menu.next_action()) is not None:
            if isinstance(action, PlayMessage):
                listening.generation += 1
                session.stop_playing()
                message = listening.messages[action.message_id]
                self._spawn(self._play_message(call_id, listening.generation, message))
            elif isinstance(action, MarkHeard) and store is not None:
                self._change(mailbox, partial(store.mark_heard, mailbox, action.message_id))
            elif isinstance(action, DeleteMessage) and store is not None:
                self.counters["messages_deleted"] += 1
                self._change(mailbox, partial(store.delete, mailbox, action.message_id))
            elif isinstance(action, Finish):
                listening.generation += 1
                session.stop_playing()
                if listening.timer is not None:
                    listening.timer.cancel()
                    listening.timer = None
                self._report(lambda: self._calls.recording_finished(call_id, self._now()))
                return
        if listening.timer is not None:
            listening.timer.cancel()
            listening.timer = None
        deadline = listening.menu.get_timer()
        if deadline is not None:
            listening.timer = self._loop.call_at(deadline, self._menu_timer, call_id)

    async def _play_message(self, call_id: str, generation: int, message: MessageInfo) -> None:
        pcm = b""
        if self._store is not None:
            try:
                pcm = await asyncio.to_thread(self._store.audio, message)
            except (OSError, WavFormatError) as error:
                logger.warning("cannot read voicemail message %s: %s", message.message_id, error)
        listening = self._listening.get(call_id)
        session = self._sessions.get(call_id)
        if listening is None or session is None or listening.generation != generation:
            return  # a key moved on meanwhile, or the call ended

        def ended() -> None:
            if listening.generation == generation:
                listening.menu.playback_finished(self._now())
                self._run_menu(call_id)

        if not pcm:
            ended()
            return
        session.play(listening.media, listening.media.codec.encode(pcm), ended)

    def _change(self, mailbox: Mailbox, change: Callable[[], MailboxCounts]) -> None:
        """A store change on a worker thread, then `on_saved` (MWI)."""

        async def run() -> None:
            try:
                counts = await asyncio.to_thread(change)
            except Exception as error:  # module rules: a failing store never stops calls
                self.counters["save_failures"] += 1
                logger.error("cannot change the mailbox of %s: %r", mailbox.account_uri, error)
                return
            if self.on_saved is not None:
                callback = self.on_saved
                self._report(lambda: callback(mailbox, counts))

        task = self._loop.create_task(run())
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)


class MailboxCountCache:
    """The (new, old) counts the MWI NOTIFYs report, by mailbox; filled at start-up and
    after every change (a save here, a deletion or playback through the store)."""

    def __init__(self, counts: Mapping[tuple[str, str], MailboxCounts] | None = None) -> None:
        self._counts: dict[tuple[str, str], MailboxCounts] = dict(counts or {})

    def __call__(self, mailbox: Mailbox) -> tuple[int, int]:
        counts = self._counts.get((mailbox.tenant_name, mailbox.number))
        return (0, 0) if counts is None else (counts.new, counts.old)

    def replace(self, counts: Mapping[tuple[str, str], MailboxCounts]) -> list[tuple[str, str]]:
        """Install a full reload; the mailboxes whose counts changed."""
        changed = [
            key
            for key in set(self._counts) | set(counts)
            if self._counts.get(key, _NONE) != counts.get(key, _NONE)
        ]
        self._counts = dict(counts)
        return changed

    def update(self, mailbox: Mailbox, counts: MailboxCounts) -> None:
        self._counts[(mailbox.tenant_name, mailbox.number)] = counts


_NONE = MailboxCounts(0, 0)


def load_greetings(directory: Path | None = None) -> dict[str, Announcement]:
    """The voicemail greetings `voicemail_greeting_<language>.wav` found in `directory`
    (default: the announcements directory).

    Raises:
        WavFormatError: a greeting file exists but cannot be played.
    """
    from softswitch.media.announcement import DEFAULT_DIRECTORY

    base = directory if directory is not None else DEFAULT_DIRECTORY
    greetings: dict[str, Announcement] = {}
    for path in sorted(base.glob("voicemail_greeting_*.wav")):
        greetings[path.stem] = load_announcement(path)
    return greetings


def start_voicemail(
    loop: asyncio.AbstractEventLoop,
    calls: CallService,
    host: str,
    engine: Engine,
    after: Callable[[], None],
    notifier: ChangeNotifier | None = None,
    config: RecordingConfig | None = None,
) -> VoicemailMedia | None:
    """Voicemail of `softswitch run` (blocking: reads the greetings and the counts; call
    it at start-up), or None when the greetings cannot be read.

    Messages go to `voicemail_directory(engine)` and the store; the MWI counts are
    loaded now and after every save here or `VOICEMAIL` notification from `notifier`
    (the API deleted or marked a message).
    """
    from cloudpbx.db import create_session_factory
    from cloudpbx.notify import VOICEMAIL
    from cloudpbx.voicemail import all_mailbox_counts, voicemail_directory
    from softswitch.media import WavFormatError

    try:
        greetings = load_greetings()
    except WavFormatError as error:
        logger.warning("voicemail disabled: %s", error)
        return None
    if not greetings:
        logger.warning("voicemail disabled: no voicemail_greeting_*.wav")
        return None
    sessions = create_session_factory(engine)

    def load_counts() -> dict[tuple[str, str], MailboxCounts]:
        with sessions() as session:
            return all_mailbox_counts(session)

    cache = MailboxCountCache(load_counts())
    calls.mwi.counts = cache
    store = DatabaseMessageStore(sessions, voicemail_directory(engine))

    def saved(mailbox: Mailbox, counts: MailboxCounts) -> None:
        cache.update(mailbox, counts)
        calls.mailbox_changed(mailbox.tenant_name, mailbox.number, loop.time())

    media = VoicemailMedia(
        loop,
        calls,
        greetings,
        host,
        RtpPortAllocator(),
        store,
        after,
        on_saved=saved,
        config=config,
    )
    if notifier is not None:

        async def reload() -> None:
            try:
                counts = await asyncio.to_thread(load_counts)
            except Exception as error:  # the store is down: counts stay as they were
                logger.warning("cannot recount the voicemail mailboxes: %r", error)
                return
            for tenant_name, number in cache.replace(counts):
                calls.mailbox_changed(tenant_name, number, loop.time())
            after()

        def on_change(topic: str) -> None:
            if topic == VOICEMAIL:
                media._spawn(reload())

        notifier.subscribe(on_change, loop)
    logger.info("voicemail messages stored under %s", store.directory)
    return media
