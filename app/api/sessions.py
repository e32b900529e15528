"""The HTTP side of session stickiness: which session a request belongs to.

The id comes from ``router.session_id`` in the body, else the ``x-session-id`` header;
both are 1-128 printable ASCII characters (anything else is a 400). The store key is the
id scoped by the caller's API key (a hash of it), so with ``ROUTER_API_KEYS`` set one
client cannot steer another client's session. The routing side is
:mod:`strategies.sessions`.
"""

from __future__ import annotations

import hashlib
import re

from starlette.requests import Request

from app.api.schemas import SESSION_ID_PATTERN, ChatCompletionRequest
from models.core.errors import BadRequestError

HEADER = "x-session-id"
_VALID = re.compile(SESSION_ID_PATTERN)


def session_key(request: Request, req: ChatCompletionRequest) -> str | None:
    """The session store key for this request, or None when it names no session."""
    sid = req.router.session_id if req.router is not None else None
    if sid is None:
        sid = request.headers.get(HEADER)
        if sid is None:
            return None
        if not _VALID.match(sid):
            raise BadRequestError(
                f"{HEADER} must be 1-128 printable ASCII characters without spaces",
                param=HEADER,
                code="invalid_session_id",
            )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    scope = ""
    if scheme.lower() == "bearer" and token.strip():
        scope = hashlib.sha256(token.strip().encode()).hexdigest()[:16]
    return f"{scope}:{sid}"
