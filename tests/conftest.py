"""Fixtures come from the vactor_cloud pytest plugin (entry point ``pytest11``), loaded
because the package is installed (``pip install -e '.[dev]'``): nothing to add here."""
