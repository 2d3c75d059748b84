project = "netbore"
author = "the netbore developers"
extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
