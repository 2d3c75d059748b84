# TEMPORARY: re-exports for modules not yet ported to netbore.http1; the lead removes this.
from netbore.http1.grammar import HOP_BY_HOP, Header, connection_tokens

__all__ = ["HOP_BY_HOP", "Header", "connection_tokens"]
