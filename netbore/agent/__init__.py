"""
The agent: control client, tunnel session and origin forwarder.
"""
