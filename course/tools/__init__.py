"""The course's notebook toolchain (run through ``make``).

- ``python -m course.tools.execute NB...``: execute notebooks in place, saving outputs.
- ``python -m course.tools.exercises [SOLUTION...]``: generate ``exercises/`` from ``solutions/``.
- ``python -m course.tools.nav``: navigation cells and the README contents table.
- ``python -m course.tools.lint``: notebook lint (executed in order, kernelspec, no errors...).
"""
