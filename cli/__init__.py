"""The ``scalesweep`` command line: the composition root on top of api, service and workers.

* :mod:`cli.main` -- the parser of every command and the dispatch;
* :mod:`cli.client_commands` -- commands that talk to a server (submit, status, runs, ...);
* :mod:`cli.admin_commands` -- commands on the database itself (db-upgrade, token);
* :mod:`cli.compute_commands` -- commands that compute or serve (run-one, serve, demo);
* :mod:`cli.runtime` -- the one function that assembles the runtime (store, executor,
  runner, app), used by ``scalesweep serve``, ``scalesweep demo`` and ``python -m workers``;
* :mod:`cli.output` -- text output (tables, CSV, JSON, the progress bar).
"""
