"""``python -m flows.cli``: the ``voxflow`` command."""

from flows.cli.main import main

raise SystemExit(main())
