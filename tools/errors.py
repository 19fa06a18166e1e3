"""The exceptions the command line reports in one line, in a module that imports nothing heavy.

`InputError` used to live in `tandem.tools.data` (which pulls in pandas and scikit-learn) and
`ProviderStop` in `tandem.tools.chat` (which pulls in LangChain); both modules re-export them.
Kept here, the command line's light commands (`tandem runs`, `show`, `--help`) and the run
context can raise and catch them without paying for those imports.
"""

from __future__ import annotations

import re


class InputError(ValueError):
    """Bad user input; str(exc) is one line that says what to do.

    Line breaks are folded into spaces so the CLI can always print the message as one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(re.sub(r"[\r\n]+", " ", str(message)))


class ProviderStop(RuntimeError):
    """The chat provider failed in a way no retry fixes; the run stops and can be resumed."""
