"""A live view of many runs: done / running / failed out of the total, and the time left
(tqdm's estimate from the rate at which runs finish), with each run's line printed above it.

Example:
    >>> lines = []
    >>> view = RunProgress(2, enabled=False, log=lines.append)
    >>> view.running(2); view.finished("run a: accuracy 1.000"); view.failed("run b failed: x")
    >>> view.close(); lines
    ['[1/2] run a: accuracy 1.000', '[2/2] run b failed: x']
    >>> view.counts()
    {'done': 1, 'running': 0, 'failed': 1, 'elsewhere': 0, 'todo': 0}
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm


class RunProgress:
    """Counts of runs done, running and failed out of ``total``; with ``enabled``, a tqdm bar
    (on stderr) that shows them and the time left. Lines go to ``log``."""

    def __init__(
        self, total: int, *, enabled: bool = True, log: Callable[[str], None] = print
    ) -> None:
        self.total, self.log = total, log
        self.done = self.failures = self.active = self.away = 0
        self._bar = tqdm(total=total, disable=not enabled, unit="run", desc="runs", leave=True)

    def counts(self) -> dict[str, int]:
        """Runs done, running, failed and not started."""
        ended = self.done + self.failures + self.away
        return {
            "done": self.done,
            "running": self.active,
            "failed": self.failures,
            "elsewhere": self.away,
            "todo": self.total - ended - self.active,
        }

    def running(self, count: int) -> None:
        """Say how many runs are running now."""
        self.active = count
        self._refresh()

    def finished(self, line: str) -> None:
        """One more run finished; ``line`` describes it."""
        self.done += 1
        self._end(line)

    def failed(self, line: str) -> None:
        """One more run failed; ``line`` says why."""
        self.failures += 1
        self._end(line)

    def elsewhere(self, line: str) -> None:
        """One more run is left to another process that holds it; ``line`` says which."""
        self.away += 1
        self._end(line)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()

    def _end(self, line: str) -> None:
        self.active = max(self.active - 1, 0)
        text = f"[{self.done + self.failures + self.away}/{self.total}] {line}"
        if self._bar.disable:
            self.log(text)
        else:
            with tqdm.external_write_mode():
                self.log(text)
        self._bar.update(1)
        self._refresh()

    def _refresh(self) -> None:
        counts = self.counts()
        self._bar.set_postfix(
            running=counts["running"], failed=counts["failed"], refresh=not self._bar.disable
        )
