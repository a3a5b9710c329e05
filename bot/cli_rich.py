"""Rich for the CLI, loaded when a command first prints: ``carebot run`` goes through the same
command-line module and never does, which keeps Rich's 3 MiB out of the bot's idle memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


class LazyConsole:
    """A ``rich.console.Console`` made on first use, with the given options."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


def new_table(*headers: Any, **options: Any) -> Table:
    from rich.table import Table

    return Table(*headers, **options)


def new_text(value: str, **options: Any) -> Text:
    from rich.text import Text

    return Text(value, **options)
