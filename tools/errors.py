"""The exceptions the command line reports in one line, in a module that imports nothing heavy.

`InputError` used to live in `tandem.tools.data` (which pulls in pandas and scikit-learn) and
`ProviderStop` in `tandem.tools.chat` (which pulls in LangChain); both modules re-export them.
Kept here, the command line's light commands (`tandem runs`, `show`, `--help`) and the run
context can raise and catch them without paying for those imports.
"""

from __future__ import annotations

import re

_NETLOC_PASSWORD = re.compile(r"(://[^/?#@:\s]*):[^/?#\s]*@")  # to the authority's last "@"
_QUERY_PASSWORD = re.compile(r"([?&])password=[^&#\s]*", re.IGNORECASE)


def without_password(text: str, mask: str | None = None) -> str:
    """`text` with the password of every connection string in it (`user:PASSWORD@host`,
    `?password=PASSWORD`) replaced by `mask`, or left out when `mask` is None.

    Left out, a connection string is the form `run.json` records, which libpq completes from
    PGPASSWORD or ~/.pgpass, so a command repeated in a message still works; masked, an error
    message shows where the password was. Works on any text, well-formed or not."""
    netloc = r"\1@" if mask is None else rf"\1:{mask}@"
    text = _NETLOC_PASSWORD.sub(netloc, text)
    if mask is not None:
        return _QUERY_PASSWORD.sub(rf"\1password={mask}", text)
    for found in reversed(list(_QUERY_PASSWORD.finditer(text))):  # "?password=x&b=2" keeps "?b=2"
        start, end = found.span()
        if found.group(1) == "?":
            end += text[end : end + 1] == "&"
            start += 1 if text[end : end + 1] not in ("", "#", " ") else 0
        text = text[:start] + text[end:]
    return text


class InputError(ValueError):
    """Bad user input; str(exc) is one line that says what to do.

    Line breaks are folded into spaces so the CLI can always print the message as one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(re.sub(r"[\r\n]+", " ", str(message)))


class ProviderStop(RuntimeError):
    """The chat provider failed in a way no retry fixes; the run stops and can be resumed."""
