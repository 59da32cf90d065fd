"""Showing a run to people: the terminal, a notebook, and the HTML report.

Runs in the manager process (live) and in ``status``/``report``. ``board`` is the model the
live views draw (a mirror of the cells fed by the manager's events, after they are saved);
``console`` the plain, rich and quiet terminal views; ``notebook`` the Jupyter view;
``text`` the status lines and JSON that ``run`` and ``status`` print; ``report`` the
self-contained HTML report (with ``report_assets``). The only package besides the CLI that
imports rich. Uses :mod:`.manager` (events, provenance) and :mod:`.record`.
"""
