"""
netbore: a self-hostable HTTP tunnel on Twisted.
"""

from ._version import __version__

__all__ = ["__version__"]
