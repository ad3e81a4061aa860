"""``python -m workers``: the runner process of a team deployment (cli.runtime.runner_main)."""

from cli.runtime import runner_main

raise SystemExit(runner_main())
