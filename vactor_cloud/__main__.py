"""``python -m vactor_cloud``: the ``vactor`` command (see :mod:`vactor_cloud.cli`)."""

from vactor_cloud.cli import main

raise SystemExit(main())
