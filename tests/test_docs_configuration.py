"""
The edge's option table in C{docs/configuration.rst} gives the defaults the
code uses.
"""

from __future__ import annotations

import re
from pathlib import Path

from netbore.edge.tap import Options

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.rst"

# A row: ``--name ...``, two or more spaces, a default of digits.
_NUMERIC_ROW = re.compile(r"^``--([a-z-]+)``\s{2,}([0-9]+(?:\.[0-9]+)?)\s{2,}", re.M)


def edge_table() -> str:
    text = DOC.read_text()
    start = text.index("Edge: ``twistd -n netbore-edge``")
    return text[start : text.index("Agent: ``twistd -n netbore-agent``", start)]


def test_every_numeric_default_in_the_edge_table_is_the_codes() -> None:
    defaults = {p[0]: p[2] for p in Options.optParameters}
    rows = _NUMERIC_ROW.findall(edge_table())
    assert len(rows) >= 10
    for name, documented in rows:
        assert name in defaults, name
        assert float(documented) == float(defaults[name]), (name, documented, defaults[name])
