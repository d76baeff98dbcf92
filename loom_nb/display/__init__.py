"""Pure renderers: a run and every view as deterministic plain text and self-contained HTML.

Data in (events, rows), strings out. The kernel's objects render themselves with these
(``RunResult._repr_mimebundle_``), and the notebook layer (``loom_nb.notebook``) draws the same
strings into its live displays and widgets, so it holds no markup of its own. Nothing here
imports IPython or ipywidgets.

- :mod:`.common`: card styles, short text, a tool call as one line, bars, tables, badges.
- :mod:`.run`: the run card, finished or live, and the session panel's transcript.
- :mod:`.views`: context partitions, token budget, signals, governance and approvals, traces.
"""
