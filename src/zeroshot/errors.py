"""The one exception type for mistakes a user can make.

The CLI turns a `UserError` into a one-line message and exit code 2; the server turns it into a 4xx
response. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, a missing file or model, an impossible request: something the user can fix."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code
