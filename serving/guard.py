"""Check a /predict request before its body is read: bearer token, media type and body size.

BentoML reads and validates the whole body before the API function runs, so checks made there
come too late: a client without the token would cost a parse and learn from the validation
details, and a 50 MB body would be read into memory first. `RequestGuard` answers 401, 415 or 413
from the headers, or while the body streams in, and hands on only a body within the limit.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.responses import JSONResponse, Response

from mlops.settings import Settings, get_settings

JSON_MEDIA_TYPE = "application/json"
TOO_LARGE = b"<too large>"  # _read_body's outcomes besides a body, told apart by identity
GONE = b"<client gone>"


def check_token(
    header: str | None, token: str | None, *, required: bool = False
) -> Response | None:
    """Return the refusal of a request whose Authorization header lacks `Bearer <token>`.

    No token configured: the endpoint is open (None), or disabled (403) when `required`.
    """
    if token is None:
        if required:
            return JSONResponse(
                {"error": "admin endpoints are disabled: set MLOPS_ADMIN_TOKEN"}, status_code=403
            )
        return None
    expected = f"Bearer {token}".encode()
    if not hmac.compare_digest((header or "").encode(), expected):  # constant time
        return JSONResponse(
            {"error": "missing or wrong bearer token in the Authorization header"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


class RequestGuard:
    """ASGI middleware: refuse POSTs to `paths` on their headers, and bodies over the limit.

    The token and the limit come from the settings, read again at each lifespan start (as the
    service reads them). A refused request's body is never read: the answer says `Connection:
    close`, so the server drops the rest instead of reading it to reach the next request.
    """

    def __init__(self, app: Any, *, paths: tuple[str, ...] = ("/predict",)) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.settings: Settings | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.settings = get_settings()
        if not _guarded(scope, self.paths):
            await self.app(scope, receive, send)
            return
        settings = self.settings or get_settings()
        refusal = self._check_headers(scope, settings)
        if refusal is None:
            body = await _read_body(receive, settings.body_limit)
            if body is GONE:
                return  # the client left: nobody to answer
            if body is TOO_LARGE:
                refusal = body_too_large(settings.body_limit)
            else:
                receive = _replay(body, receive)
        if refusal is not None:
            refusal.headers["Connection"] = "close"
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _check_headers(scope: dict, settings: Settings) -> Response | None:
        headers = _headers(scope, (b"authorization", b"content-type", b"content-length"))
        denied = check_token(headers.get(b"authorization"), settings.api_token)
        if denied is not None:
            return denied
        media_type = (headers.get(b"content-type") or "").split(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            return JSONResponse(
                {"error": f"send the records as JSON, with Content-Type: {JSON_MEDIA_TYPE}"},
                status_code=415,
            )
        announced = headers.get(b"content-length") or ""
        if announced.isdigit() and int(announced) > settings.body_limit:
            return body_too_large(settings.body_limit)
        return None


def body_too_large(limit: int) -> Response:
    """Return the 413 answer naming the body limit."""
    return JSONResponse(
        {
            "error": f"the request body is larger than the limit of {limit} bytes; send fewer "
            "records per request (the limit is MLOPS_MAX_BODY_BYTES)",
            "max_body_bytes": limit,
        },
        status_code=413,
    )


def _guarded(scope: dict, paths: frozenset[str]) -> bool:
    """Whether the request is a POST to one of `paths` (the router answers 405 to other methods).

    Other methods reach neither a body parser nor the model, so they need no token: refusing
    them with 401 would hide the 405 that names the allowed method.
    """
    return scope["type"] == "http" and scope["method"] == "POST" and route_path(scope) in paths


def route_path(scope: dict) -> str:
    """Return the request's path below the application's root path (what routes match)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _headers(scope: dict, names: tuple[bytes, ...]) -> dict[bytes, str]:
    """Return the first value of each of `names` the request has (names in lower case)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in names and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _read_body(receive: Any, limit: int) -> bytes:
    """Read the body, counting bytes as they come; stop once it passes `limit`.

    Return the body, TOO_LARGE when it passed the limit, or GONE when the client left first.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """Return a `receive` that gives the body read already, then what the client sends next."""
    delivered = False

    async def replay() -> dict:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
