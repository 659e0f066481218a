"""What the ``ctrl_c`` fixture (tests/conftest.py) makes SIGINT raise in the main thread."""


class Interrupted(BaseException):
    """Raised by the ``ctrl_c`` fixture's SIGINT handler (a KeyboardInterrupt would stop pytest)."""
