"""The layout's rules, read from the source (``tests.auxil.imports``): no cycle between modules
or packages, ``storage`` and the kernel import nothing above them, nobody imports the
composition root, ``telegram`` only at the edges, and no Telegram-free module imports one with
Telegram."""

from __future__ import annotations

from pathlib import Path

from tests.auxil.imports import broken_rules, package_graph, read_graph


def test_the_code_keeps_every_layout_rule() -> None:
    graph = read_graph()
    assert "storage" in package_graph(graph)["handlers"]  # the reader sees real imports
    assert broken_rules(graph) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_function_local_import_still_makes_a_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "storage/__init__.py": "",
            "storage/a.py": "def f():\n    from surveys.b import g\n",
            "surveys/__init__.py": "",
            "surveys/b.py": "from storage.a import f\n",
            "bot/__init__.py": "",
            "bot/app.py": "import handlers.x\n",
            "bot/kernel/__init__.py": "",
            "bot/kernel/texts.py": "",
            "handlers/__init__.py": "",
            "handlers/x.py": "import telegram\nfrom bot.kernel import texts\n",
            "handlers/core.py": "from handlers import x\nfrom bot import app\n",
            "scheduler/__init__.py": "",
            "scheduler/job.py": "import telegram\n",
            "dashboard/__init__.py": "",
        },
    )
    problems = broken_rules(read_graph(tmp_path))
    assert problems == [
        "module cycle: storage.a <-> surveys.b",
        "package cycle: storage <-> surveys",
        "the composition root imported by a package: handlers.core -> bot.app",
        "a module without Telegram imports one with it: handlers.core -> handlers.x",
        "storage imports another package: storage.a -> surveys.b",
        "telegram imported outside the edges: scheduler.job",
    ]
