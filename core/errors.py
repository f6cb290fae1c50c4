"""The base of errors a person can act on: the message says what failed and what to do."""


class FleetError(Exception):
    """An error whose message is fit to show a user as one line."""


class UsageError(FleetError):
    """Bad command-line input; the CLI exits 2."""


def described(exc: BaseException) -> str:
    """`Type: message` of an exception (`Type` alone if it has no message); for a group (a
    task group's failure), of the exceptions inside it too, so a log says what failed, not
    "1 sub-exception"."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        text += " [" + "; ".join(described(inner) for inner in exc.exceptions) + "]"
    return text
