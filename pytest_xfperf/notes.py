"""Lines shown under the summary table: each said once, each with the plugin's prefix."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

PREFIX = "xfperf: "


class Notes:
    """An ordered set of messages. ``add`` takes the bare text; the prefix is added once."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self._lines: dict[str, None] = {}
        self.extend(lines)

    def add(self, text: str) -> None:
        line = text if text.startswith(PREFIX) else PREFIX + text
        self._lines.setdefault(line, None)

    def extend(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(text)

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and (text in self._lines or PREFIX + text in self._lines)

    def lines(self) -> list[str]:
        return list(self._lines)
