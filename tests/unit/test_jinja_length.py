"""No Jinja expression over 200 characters in roles/*/tasks (issue 18): longer logic belongs in
a tested filter or module, where it can be read, linted and unit-tested."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 200
EXPRESSION = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
ALLOWED: set[str] = set()  # files allowed to hold a longer expression: none


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def long_expressions(path: Path) -> list[str]:
    found = []
    for task in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
        for text in strings(task):
            for expression in EXPRESSION.findall(text):
                # measured as written, whitespace runs counted once
                size = len(re.sub(r"\s+", " ", expression))
                if size > LIMIT:
                    found.append(f"{path.relative_to(ROOT)}: task {task.get('name', '?')!r}: {size} characters")
    return found


def test_no_long_jinja_in_role_tasks() -> None:
    files = sorted(ROOT.glob("roles/*/tasks/*.yml"))
    assert files
    offenders = [line for path in files if str(path.relative_to(ROOT)) not in ALLOWED for line in long_expressions(path)]
    assert not offenders, "Jinja expressions over 200 characters (move the logic into a filter):\n" + "\n".join(offenders)


def test_the_allowance_lists_only_files_that_still_need_it() -> None:
    stale = sorted(name for name in ALLOWED if not (ROOT / name).is_file() or not long_expressions(ROOT / name))
    assert not stale, f"no long Jinja left in {', '.join(stale)}: remove them from ALLOWED"
