"""``python -m cli``: the same as the ``scalesweep`` command."""

from cli.main import main

raise SystemExit(main())
