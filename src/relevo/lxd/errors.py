"""What can go wrong talking to LXD, as types a caller can catch, each saying what failed and why."""

from __future__ import annotations

from relevo.errors import ProviderError


class LXDError(ProviderError):
    """LXD refused or failed a request. `what` is the action in relevo's words ("start instance 'web1'"),
    `lxd_error` LXD's own message; `status` the HTTP status (0 when there was no answer)."""

    def __init__(
        self, what: str, lxd_error: str, *, method: str = "", path: str = "", status: int = 0
    ) -> None:
        self.what = what
        self.lxd_error = lxd_error
        self.method = method
        self.path = path
        self.status = status
        where = f" ({status} on {method} {path})" if status else (f" ({method} {path})" if method else "")
        super().__init__(f"LXD: {what} failed: {lxd_error}{where}")


class LXDNotFoundError(LXDError):
    """404: the instance, network, profile, image or operation does not exist."""


class LXDConflictError(LXDError):
    """409: it already exists, or is in a state that forbids the action."""


class LXDForbiddenError(LXDError):
    """403: this client is not trusted (a remote's client certificate not added), or lacks permission."""


class LXDBadRequestError(LXDError):
    """400: LXD rejected the request's content (a bad config key, a bad name)."""


class LXDOperationError(LXDError):
    """An asynchronous operation ended in failure or was cancelled."""


class LXDTimeoutError(LXDError):
    """No answer, or the operation did not finish, within the time allowed."""


class LXDUnreachableError(LXDError):
    """No connection: no daemon at that socket or address, no permission on the socket, or a server
    whose certificate is not the pinned one."""


def error_for_status(status: int) -> type[LXDError]:
    return {
        400: LXDBadRequestError,
        403: LXDForbiddenError,
        404: LXDNotFoundError,
        409: LXDConflictError,
        504: LXDTimeoutError,
    }.get(status, LXDError)
