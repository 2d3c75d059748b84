"""
The former name of L{netbore.auth.keys}: C{python -m netbore.keys} still
runs the keys command.  Use C{python -m netbore.auth.keys}.
"""

from __future__ import annotations

import sys

from netbore.auth.keys import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
