"""``python -m workers``: the runner process (see workers.runner)."""

from workers.runner import main

raise SystemExit(main())
