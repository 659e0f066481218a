"""``python -m vactor_cloud.cli``: the ``vactor`` command."""

from vactor_cloud.cli import main

raise SystemExit(main())
