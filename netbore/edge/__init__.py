"""
The edge: control API, agent WebSocket endpoint and tunnel proxy on one Site.
"""
