"""The course's notebook toolchain (run through ``make``).

- ``python -m tools.execute NB...``: execute notebooks in place, saving outputs.
- ``python -m tools.exercises [SOLUTION...]``: generate ``exercises/`` from ``solutions/``.
- ``python -m tools.nav``: navigation cells and the README contents table.
- ``python -m tools.lint``: notebook lint (executed in order, kernelspec, no errors...).
"""
