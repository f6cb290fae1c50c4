"""The base of errors a person can act on: the message says what failed and what to do."""


class FleetError(Exception):
    """An error whose message is fit to show a user as one line."""


class UsageError(FleetError):
    """Bad command-line input; the CLI exits 2."""
