"""
The README's main job: an edge, an agent and a sample origin on loopback.
"""
