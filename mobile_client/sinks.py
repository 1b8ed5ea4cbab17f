"""Result sinks: where the device writes what happened to each frame."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from splitedge.mobile_client.outcome import FrameOutcome


class JsonLinesSink:
    """One JSON object per frame, to a file or to stdout (``-``); flushed per line."""

    def __init__(self, target: str | Path = "-") -> None:
        self._target = str(target)
        self._file: IO[str] | None = None
        self._owns = False

    def __enter__(self) -> JsonLinesSink:
        if self._target == "-":
            self._file = sys.stdout
        else:
            Path(self._target).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._target, "w", encoding="utf-8")
            self._owns = True
        return self

    def write(self, outcome: FrameOutcome, **extra: Any) -> None:
        """One line: the outcome's JSON plus any ``extra`` keys (e.g. the decision)."""
        assert self._file is not None, "use JsonLinesSink inside 'with'"
        record = outcome.to_json() | extra
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns and self._file is not None:
            self._file.close()
