"""
The netbore benchmark suite: C{python bench/run.py [--quick] [--json out.json]}.
"""
