"""Progress of a run as it happens: a live table in a terminal, an HTML table updated in place in
a notebook, one line per step change when the output is not a terminal (CI logs)."""

from __future__ import annotations

import html
import time
from typing import Any, Protocol

from mnemos._deps import optional

_STYLE = {"succeeded": "green", "cached": "cyan", "failed": "red", "cancelled": "yellow", "running": "bold blue"}


class Display(Protocol):
    def update(self, state: dict[str, Any]) -> None: ...
    def close(self, state: dict[str, Any]) -> None: ...


def _elapsed(st: dict[str, Any]) -> str:
    if not st.get("started"):
        return ""
    end = st.get("finished") or time.time()
    return f"{max(0.0, end - st['started']):.1f}s"


def _items(st: dict[str, Any]) -> tuple[str, str]:
    prog = st.get("progress") or {}
    total, done, rate = prog.get("total"), prog.get("done") or 0, prog.get("rate")
    items = f"{done}/{total}" if total else ""
    return items, (f"{rate:.1f}" if rate else "")


def rows(state: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """``(step, kind, status, items, items/s, time)`` per step, in run order."""
    out = []
    for name in state["order"]:
        st = state["steps"][name]
        items, rate = _items(st)
        out.append((name, st["type"], st["status"], items, rate, _elapsed(st)))
    return out


def title(state: dict[str, Any]) -> str:
    return f"run {state['id']} · {state['pipeline']['name']} · {state['status']}"


class TerminalDisplay:
    """A ``rich.live.Live`` table, re-rendered a few times a second (elapsed times tick)."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self.state: dict[str, Any] | None = None
        self.live = Live(console=console, refresh_per_second=4, transient=False, get_renderable=self._table)
        self.live.start()

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        state = self.state
        if state is None:
            return Text("starting…")
        table = Table("step", "kind", "status", "items", "items/s", "time", title=title(state), title_justify="left")
        for name, kind, status, items, rate, elapsed in rows(state):
            style = _STYLE.get(status, "")
            table.add_row(name, kind, f"[{style}]{status}[/{style}]" if style else status, items, rate, elapsed)
        return table

    def update(self, state: dict[str, Any]) -> None:
        self.state = state
        self.live.refresh()

    def close(self, state: dict[str, Any]) -> None:
        self.update(state)
        self.live.stop()


class LineDisplay:
    """One line per step status change (for logs and pipes)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.seen: dict[str, str] = {}

    def update(self, state: dict[str, Any]) -> None:
        for name, kind, status, items, rate, elapsed in rows(state):
            if self.seen.get(name) != status:
                self.seen[name] = status
                extra = " ".join(x for x in (items and f"items={items}", rate and f"items/s={rate}", elapsed) if x)
                self.console.print(f"step {name} ({kind}): {status} {extra}".rstrip())

    def close(self, state: dict[str, Any]) -> None:
        self.update(state)
        self.console.print(title(state))


class NotebookDisplay:
    """An HTML table with a progress bar per step, updated in place (no ipywidgets needed)."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.handle = display(HTML("<i>starting…</i>"), display_id=True)

    def _render(self, state: dict[str, Any]) -> str:
        cells = []
        for name, kind, status, items, rate, elapsed in rows(state):
            prog = state["steps"][name].get("progress") or {}
            total = prog.get("total") or (1 if status in ("succeeded", "cached") else 0)
            done = prog.get("done") or (1 if status in ("succeeded", "cached") and not prog.get("total") else 0)
            bar = f'<progress value="{done}" max="{total}"></progress>' if total else ""
            color = {"succeeded": "green", "cached": "teal", "failed": "red", "cancelled": "orange"}.get(
                status, "inherit"
            )
            cells.append(
                f"<tr><td>{html.escape(name)}</td><td>{kind}</td><td style='color:{color}'>{status}</td>"
                f"<td>{bar} {items}</td><td>{rate}</td><td>{elapsed}</td></tr>"
            )
        head = "<tr><th>step</th><th>kind</th><th>status</th><th>items</th><th>items/s</th><th>time</th></tr>"
        return f"<b>{html.escape(title(state))}</b><table>{head}{''.join(cells)}</table>"

    def update(self, state: dict[str, Any]) -> None:
        if self.handle is not None:
            self.handle.update(self._html(self._render(state)))

    def close(self, state: dict[str, Any]) -> None:
        self.update(state)


def in_notebook() -> bool:
    ipython = optional("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_display(console: Any = None) -> Display:
    """The display that suits where the output goes."""
    if in_notebook():
        return NotebookDisplay()
    from rich.console import Console

    console = console or Console(highlight=False)
    return TerminalDisplay(console) if console.is_terminal else LineDisplay(console)
