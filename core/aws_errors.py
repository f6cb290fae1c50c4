"""What an AWS error was, in a form a person (or a model) can act on."""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


# How IAM says no, across services' spellings.
ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)


def error_code(exc: ClientError) -> str:
    """The error code, e.g. AccessDenied.

    The emulator answers an IAM refusal on a JSON-protocol service (Lambda, Logs, ...)
    with an XML body, which botocore cannot parse: it reports the HTTP status as the code
    and the XML as the message. The code is recovered from that XML.
    """
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code.isdigit():
        match = _XML_CODE.search(str(error.get("Message", "")))
        if match:
            return match.group(1)
    return code


def error_message(exc: ClientError) -> str:
    message = str(exc.response.get("Error", {}).get("Message", ""))
    match = _XML_MESSAGE.search(message)
    return match.group(1) if match else message


def is_access_denied(exc: ClientError) -> bool:
    return error_code(exc) in ACCESS_DENIED
