"""
Who may read a file holding a secret: the edge refuses to start with a key,
secret or API-key file that its group or others may use, and the agent warns
about one and goes on, as OpenSSH does with private keys.
"""

from __future__ import annotations

import os
import stat

__all__ = ["LOOSE_BITS", "loose_permissions"]

#: Permission bits a secret file must not have: any access by its group or
#: by others (OpenSSH's rule for private keys).
LOOSE_BITS = 0o077


def loose_permissions(path: str | None, what: str) -> str | None:
    """
    L{None} when the file at C{path} is private to its owner (or cannot be
    looked at: reading it then fails with its own message), or when there is
    no file (C{path} L{None}: an option not given); otherwise one
    line naming C{what} it is, the file, its mode and the fix.
    """
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & LOOSE_BITS:
        return None
    return f"{what} {path} is accessible by group or others (mode {mode:04o}); run: chmod 600 {path}"
