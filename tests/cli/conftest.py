"""Every test here runs ``run.py`` as a child process on the real clock: marked ``slow``.

``pytest -m "not slow"`` leaves them out for a quick run while editing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
