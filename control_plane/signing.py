"""Signed control-plane messages: HMAC-SHA256 envelopes under a shared fleet key.

Without a key, anyone who may publish on the broker can change a device's SLA or
announce an edge server of their own. With one (``--mqtt-key-file`` on both CLIs,
``[mqtt] key_file`` on the edge), edge presence and control messages travel in an
envelope (docs/mqtt.md, "Signed messages")::

    {"v": 1, "kid": "3f9a0c1e", "ts": 1732470000.12, "sid": "9b2e...", "seq": 17,
     "body": {...the plain message...}, "sig": "<64 hex>"}

``sig`` = HMAC-SHA256(key, canonical JSON of the envelope without ``sig`` plus
``"topic": <topic>``), canonical = sorted keys, no spaces (:func:`encode_object`).
So a signature binds the body to its topic, its time ``ts`` (signer's wall clock,
Unix s) and its signer session ``sid`` with a counter ``seq``.

:class:`Verifier` accepts a message only if the signature holds and it is fresh:
``|now - ts| <= max_age_s`` (60 s), never seen before, and not older (``seq``) than
the last one accepted from the same session on that topic. A retained message
counts the same way: the edge re-signs its presence on every publish (every
second), so the retained copy is always fresh while the edge lives; a retained
control message is honoured for ``max_age_s`` after it was signed.

One exception, the last will: it is signed when the edge connects (``"will":
true``) and fires whenever the edge dies, perhaps hours later. A stale will is
accepted only when its ``sid`` is the session whose presence this device accepted
last on that topic, and only once: an old will of an earlier run, or one replayed,
changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitedge.proto.control import MessageError, decode_object, encode_object

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "FleetKey",
    "RejectLog",
    "SignatureError",
    "Signer",
    "Verifier",
    "load_key_file",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 60.0
MIN_KEY_BYTES = 16
ENVELOPE_VERSION = 1
_FIELDS = {"v", "kid", "ts", "sid", "seq", "body", "sig"}
_USED_WILLS_KEPT = 1024


class SignatureError(MessageError):
    """A message failed verification; ``str()`` is the one-line reason.

    ``duplicate``: the very message accepted before (a retained copy delivered again
    after a reconnect), harmless and logged at DEBUG only.
    """

    def __init__(self, reason: str, *, duplicate: bool = False) -> None:
        super().__init__(reason)
        self.duplicate = duplicate


@dataclass(frozen=True)
class FleetKey:
    """The shared secret of a fleet; ``kid`` names it in envelopes (default: from a hash)."""

    secret: bytes = field(repr=False)
    kid: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ValueError(
                f"fleet key is {len(self.secret)} bytes, need at least {MIN_KEY_BYTES} "
                "(e.g. openssl rand -hex 32 > fleet.key)"
            )
        if not self.kid:
            digest = hashlib.sha256(b"splitedge-kid\0" + self.secret).hexdigest()[:8]
            object.__setattr__(self, "kid", digest)

    def mac(self, signed: bytes) -> str:
        return hmac.new(self.secret, signed, hashlib.sha256).hexdigest()


def load_key_file(path: str | Path, what: str = "--mqtt-key-file") -> FleetKey:
    """The key in ``path`` (its bytes, whitespace around stripped); ValueError naming ``what``."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what}: {str(p)!r} is a directory, not a key file")
    try:
        secret = p.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {str(p)!r}: {exc.strerror}") from None
    try:
        return FleetKey(secret)
    except ValueError as exc:
        raise ValueError(f"{what}: {str(p)!r}: {exc}") from None


def _signed_bytes(topic: str, envelope: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in envelope.items() if k != "sig"}
    return encode_object({**unsigned, "topic": topic})


class Signer:
    """Wraps payloads in signed envelopes; one session id and counter per signer."""

    def __init__(self, key: FleetKey, *, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.sid = secrets.token_hex(8)
        self._clock = clock
        self._seq = itertools.count()

    def sign(self, topic: str, payload: bytes, *, will: bool = False) -> bytes:
        """The envelope for ``payload`` (a JSON object) on ``topic``."""
        envelope: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "kid": self.key.kid,
            "ts": self._clock(),
            "sid": self.sid,
            "seq": next(self._seq),
            "body": decode_object(payload, "signed"),
        }
        if will:
            envelope["will"] = True
        envelope["sig"] = self.key.mac(_signed_bytes(topic, envelope))
        return encode_object(envelope)


class Verifier:
    """Checks envelopes and returns their bodies; remembers what it accepted (replays)."""

    def __init__(
        self,
        key: FleetKey,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.key = key
        self.max_age_s = max_age_s
        self._clock = clock
        self._seen: dict[str, float] = {}  # sig -> when it goes stale (no replay can pass)
        self._last: dict[str, tuple[str, int]] = {}  # topic -> (sid, seq) accepted last
        self._used_wills: OrderedDict[str, None] = OrderedDict()

    def open(self, topic: str, payload: bytes, *, retained: bool = False) -> bytes:
        """The body of a valid, fresh envelope (as JSON bytes); else :class:`SignatureError`."""
        env = self._envelope(payload)
        expected = self.key.mac(_signed_bytes(topic, env))
        if not hmac.compare_digest(expected, env["sig"]):
            raise SignatureError("bad signature (another key, or signed for another topic)")
        sig, sid, seq, will = env["sig"], env["sid"], env["seq"], env.get("will", False)
        now = self._clock()
        age_s = now - env["ts"]
        if sig in self._seen or sig in self._used_wills:
            raise SignatureError("replayed: this exact message was accepted before", duplicate=True)
        if age_s < -self.max_age_s:
            raise SignatureError(
                f"signed {-age_s:.0f} s in the future "
                f"(clocks more than {self.max_age_s:g} s apart?)"
            )
        last = self._last.get(topic)
        if will:
            if age_s > self.max_age_s and (last is None or last[0] != sid):
                raise SignatureError(
                    f"stale last will: signed {age_s:.0f} s ago by a session this device "
                    "did not see last on this topic"
                )
            self._used_wills[sig] = None
            while len(self._used_wills) > _USED_WILLS_KEPT:
                self._used_wills.popitem(last=False)
        else:
            if age_s > self.max_age_s:
                what = "retained message" if retained else "message"
                raise SignatureError(
                    f"stale {what}: signed {age_s:.0f} s ago, over the {self.max_age_s:g} s limit"
                )
            if last is not None and last[0] == sid and seq <= last[1]:
                raise SignatureError(f"replayed or out of order: seq {seq} after {last[1]}")
            self._forget_expired(now)
            self._seen[sig] = env["ts"] + self.max_age_s
            self._last[topic] = (sid, seq)
        return encode_object(env["body"])

    def _forget_expired(self, now: float) -> None:
        if len(self._seen) > 256:
            self._seen = {s: t for s, t in self._seen.items() if t >= now}

    def _envelope(self, payload: bytes) -> dict[str, Any]:
        try:
            env = decode_object(payload, "signed message")
        except MessageError as exc:
            raise SignatureError(str(exc)) from None
        if "sig" not in env or "body" not in env:
            raise SignatureError("unsigned message (a fleet key is configured here)")
        missing = sorted(_FIELDS - set(env))
        unknown = sorted(set(env) - _FIELDS - {"will"})
        if missing or unknown:
            which = f"lacks {missing[0]!r}" if missing else f"has unknown key {unknown[0]!r}"
            raise SignatureError(f"malformed envelope: {which}")
        checks = (
            (env["v"] == ENVELOPE_VERSION and type(env["v"]) is int, "v must be 1"),
            (isinstance(env["kid"], str), "kid must be a string"),
            (
                type(env["ts"]) in (int, float) and math.isfinite(env["ts"]),
                "ts must be a number (Unix seconds)",
            ),
            (isinstance(env["sid"], str) and 0 < len(env["sid"]) <= 64, "sid must be a string"),
            (type(env["seq"]) is int and env["seq"] >= 0, "seq must be an integer >= 0"),
            (isinstance(env["body"], dict), "body must be an object"),
            (isinstance(env["sig"], str) and len(env["sig"]) == 64, "sig must be 64 hex digits"),
            (env.get("will", False) in (True, False), "will must be a boolean"),
        )
        for ok, reason in checks:
            if not ok:
                raise SignatureError(f"malformed envelope: {reason}")
        if env["kid"] != self.key.kid:
            raise SignatureError(
                f"signed with key id {env['kid']!r}, this device holds {self.key.kid!r}"
            )
        return env


class RejectLog:
    """Logs refused messages at WARNING, at most once per ``every_s`` per topic (a flood of
    forgeries must not flood the log); the rest are counted and named in the next line."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, topic: str, exc: SignatureError) -> None:
        if exc.duplicate:
            self._log.debug("%s on %s ignored: %s", self._what, topic, exc)
            return
        now = self._clock()
        last = self._last.get(topic)
        if last is not None and now - last < self._every_s:
            self._suppressed[topic] = self._suppressed.get(topic, 0) + 1
            return
        self._last[topic] = now
        more = self._suppressed.pop(topic, 0)
        tail = f" ({more} more refused since the last line)" if more else ""
        self._log.warning("%s on %s refused: %s%s", self._what, topic, exc, tail)


def main(argv: list[str] | None = None) -> int:
    """``python -m splitedge.control_plane.signing --key-file K --topic T 'JSON'``: print
    the signed envelope, for ``mosquitto_pub -m "$(...)"`` (an operator's control message)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m splitedge.control_plane.signing",
        description="Sign one control-plane message with the fleet key and print the envelope "
        "(valid for 60 s after signing; docs/mqtt.md).",
    )
    parser.add_argument("--key-file", required=True, metavar="PATH", help="the fleet key")
    parser.add_argument("--topic", required=True, help="the topic it will be published on")
    parser.add_argument("message", help="the plain JSON message, e.g. '{\"sla_ms\": 80}'")
    args = parser.parse_args(argv)
    try:
        key = load_key_file(args.key_file, "--key-file")
        print(Signer(key).sign(args.topic, args.message.encode()).decode())
    except ValueError as exc:  # (MessageError is one)
        print(f"splitedge-sign: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
