"""The README's module table matches the tree: one line per module of ``app/``, no more."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_every_module_has_one_line_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    table = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(app/[^`]+\.py)` \|", table, flags=re.M)
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "app").rglob("*.py"))
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == modules
