"""The realtime database's wire protocol: small JSON envelopes over WebSocket, sans-I/O.

Modelled on Firebase's (``realtime/Connection.ts``, ``core/PersistentConnection.ts``).  A
client request carries a number ``r`` that the reply repeats::

    {"t":"d","d":{"r":1,"a":"q","b":{"p":"/todos"}}}                 listen
    {"t":"d","d":{"r":2,"a":"p","b":{"p":"/todos/-Nd…","d":{"text":"milk"}}}}   put (set)
    {"t":"d","d":{"r":3,"a":"p","b":{"p":"/n","d":5,"h":"9f86…","i":"k1"}}}  put if the hash matches
    {"t":"d","d":{"r":4,"a":"m","b":{"p":"/","d":{"a/b":1,"c":null}}}} merge (update)
    {"t":"d","d":{"r":5,"b":{"s":"ok","d":null}}}                      a reply (server → client)
    {"t":"d","d":{"a":"d","b":{"p":"/todos/-Nd…","d":{"text":"milk"}}}}  data pushed to a listener
    {"t":"d","d":{"a":"m","b":{"p":"/","d":{"a/b":1,"c":null}}}}      a merge pushed to a listener
    {"t":"c","d":{"t":"h","d":{"ts":1700000000000,"v":"5","s":"s1"}}} hello, first frame
    {"t":"c","d":{"t":"e","d":{"code":"bad-json","error":"…"}}}        an unreadable frame

Actions (:class:`Action`): ``q`` listen, ``n`` unlisten, ``g`` get, ``p`` put, ``m`` merge,
``o``/``om``/``oc`` onDisconnect put/merge/cancel, ``auth``/``unauth``.  Reply statuses are
:class:`Status` values.  A frame that is not JSON or not an envelope gets the control error
(the course's :class:`course.wire.envelope.ErrorCode` values); a well-formed envelope with a
bad body gets a reply with ``bad_request`` or ``invalid_path`` and its number.  The
connection lives on in both cases.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from course.wire.envelope import BadMessage, ErrorCode
from course.wire.tree import TreeError, TreeErrorCode, join_path, parse_path

__all__ = ["PROTOCOL_VERSION", "Action", "Status", "Request", "Reply", "Push", "Hello", "ControlError",
           "BadRequest", "status_of", "decode_request", "encode_request", "reply", "data_push",
           "merge_push", "hello", "control_error", "decode_server"]

PROTOCOL_VERSION = "5"  #: Firebase's, announced in the hello


class Action(str, enum.Enum):
    """What a client asks (``a``)."""

    LISTEN = "q"
    UNLISTEN = "n"
    GET = "g"
    PUT = "p"
    MERGE = "m"
    DISCONNECT_PUT = "o"
    DISCONNECT_MERGE = "om"
    DISCONNECT_CANCEL = "oc"
    AUTH = "auth"
    UNAUTH = "unauth"


class Status(str, enum.Enum):
    """A reply's ``s``."""

    OK = "ok"
    PERMISSION_DENIED = "permission_denied"  #: the rules refused it
    DATASTALE = "datastale"                  #: a transaction's hash did not match
    INVALID_PATH = "invalid_path"            #: a bad key, or too deep
    INVALID_DATA = "invalid_data"            #: not a JSON value the tree holds
    TOO_BIG = "too_big"                      #: the value is over the server's bound
    BAD_REQUEST = "bad_request"              #: a body without the fields of its action
    UNAVAILABLE = "unavailable"              #: the server could not store the write


_PATH_ACTIONS = set(Action)
_DATA_ACTIONS = {Action.PUT, Action.MERGE, Action.DISCONNECT_PUT, Action.DISCONNECT_MERGE}
_OBJECT_ACTIONS = {Action.MERGE, Action.DISCONNECT_MERGE}


def status_of(error: TreeError) -> Status:
    """The reply status of a refused path or value."""
    return {TreeErrorCode.BAD_PATH: Status.INVALID_PATH, TreeErrorCode.TOO_DEEP: Status.INVALID_PATH,
            TreeErrorCode.BAD_VALUE: Status.INVALID_DATA, TreeErrorCode.TOO_BIG: Status.TOO_BIG}[error.code]


@dataclass(frozen=True)
class Request:
    """One client request, checked.

    Attributes:
        r: its number (the reply repeats it).
        action: what it asks.
        path: the keys of ``b.p`` (``()`` for actions without a path, and for the root).
        data: ``b.d`` (for put and merge), else ``None``.
        hash: ``b.h``, the transaction's hash, or ``None``.
        cred: ``b.cred`` of ``auth``.
        id: ``b.i``, a transaction attempt's id: sent again after a reconnect, it is
            answered ``ok`` without being applied twice (not in Firebase's protocol).
    """

    r: int
    action: Action
    path: tuple[str, ...] = ()
    data: Any = None
    hash: str | None = None
    cred: Any = None
    id: str | None = None


class BadRequest(ValueError):
    """A request refused while decoding.

    Attributes:
        r: the request number if it could be read (then answer with :meth:`reply`), else
            ``None`` (then send :meth:`control`).
        status: the reply status (when ``r`` is known).
        code: the envelope error code (when it is not).
    """

    def __init__(self, text: str, *, r: int | None = None, status: Status = Status.BAD_REQUEST,
                 code: ErrorCode = ErrorCode.BAD_SHAPE) -> None:
        super().__init__(text)
        self.r, self.status, self.code = r, status, code

    def answer(self) -> str:
        """The frame that answers it: a reply if ``r`` is known, else a control error."""
        if self.r is not None:
            return reply(self.r, self.status, str(self))
        return control_error(self.code, str(self))


def _loads(text: str | bytes) -> Any:
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError:
            raise BadRequest("binary frame is not UTF-8 text", code=ErrorCode.NOT_TEXT) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(f"bad JSON: {error.msg} at position {error.pos}", code=ErrorCode.BAD_JSON) from None
    except RecursionError:
        raise BadRequest("bad JSON: nested too deeply", code=ErrorCode.BAD_JSON) from None


def decode_request(text: str | bytes) -> Request:
    """Read one client frame.

    Raises:
        BadRequest: not UTF-8 or not JSON, not a ``{"t":"d","d":{"r":int,"a":str,"b":{}}}``
            envelope (``r`` unknown: answer with a control error), or an unknown action,
            a missing field, a bad path (``r`` known: answer with a reply).
    """
    message = _loads(text)
    if not (isinstance(message, dict) and message.get("t") == "d" and isinstance(message.get("d"), dict)):
        raise BadRequest('expected {"t":"d","d":{"r":…,"a":…,"b":…}}')
    inner = message["d"]
    r = inner.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise BadRequest('"r" must be a request number (an integer >= 0)')
    try:
        action = Action(inner.get("a"))
    except ValueError:
        raise BadRequest(f"unknown action {inner.get('a')!r}", r=r) from None
    body = inner.get("b", {})
    if not isinstance(body, dict):
        raise BadRequest('"b" must be an object', r=r)
    if action is Action.AUTH:
        return Request(r, action, cred=body.get("cred"))
    if action is Action.UNAUTH:
        return Request(r, action)
    if not isinstance(body.get("p"), str):
        raise BadRequest(f'action {action.value!r} needs a path "p" (a string)', r=r)
    try:
        path = parse_path(body["p"])
    except TreeError as error:
        raise BadRequest(str(error), r=r, status=Status.INVALID_PATH) from None
    if action in _DATA_ACTIONS and "d" not in body:
        raise BadRequest(f'action {action.value!r} needs the data "d"', r=r)
    data = body.get("d")
    if action in _OBJECT_ACTIONS and not isinstance(data, dict):
        raise BadRequest(f'action {action.value!r} needs an object of relative paths in "d"', r=r)
    digest = body.get("h")
    if digest is not None and (action is not Action.PUT or not isinstance(digest, str)):
        raise BadRequest('"h" is a hash (a string), for "p" only', r=r)
    attempt = body.get("i")
    if attempt is not None and (digest is None or not isinstance(attempt, str) or not 0 < len(attempt) <= 64):
        raise BadRequest('"i" is an id of 1 to 64 characters, for a "p" with "h" only', r=r)
    return Request(r, action, path, data, digest, id=attempt)


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def encode_request(r: int, action: Action | str, body: dict[str, Any]) -> str:
    """A client frame: ``{"t":"d","d":{"r":r,"a":action,"b":body}}``."""
    return _dumps({"t": "d", "d": {"r": r, "a": Action(action).value, "b": body}})


def reply(r: int, status: Status | str, data: Any = None) -> str:
    """A reply: ``{"t":"d","d":{"r":r,"b":{"s":status,"d":data}}}``."""
    return _dumps({"t": "d", "d": {"r": r, "b": {"s": Status(status).value, "d": data}}})


def data_push(path: tuple[str, ...] | str, data: Any) -> str:
    """Data for a listener: the value at ``path`` is now ``data``."""
    return _dumps({"t": "d", "d": {"a": "d", "b": {"p": join_path(parse_path(path)), "d": data}}})


def merge_push(path: tuple[str, ...] | str, changes: dict[str, Any]) -> str:
    """A merge for a listener: the relative paths of ``changes`` below ``path`` were set."""
    return _dumps({"t": "d", "d": {"a": "m", "b": {"p": join_path(parse_path(path)), "d": changes}}})


def hello(ts: int, session: str) -> str:
    """The server's first frame: its time (ms), the protocol version, a session id."""
    return _dumps({"t": "c", "d": {"t": "h", "d": {"ts": ts, "v": PROTOCOL_VERSION, "s": session}}})


def control_error(code: ErrorCode | str, text: str) -> str:
    """The answer to a frame that has no request number."""
    return _dumps({"t": "c", "d": {"t": "e", "d": {"code": ErrorCode(code).value, "error": text}}})


@dataclass(frozen=True)
class Reply:
    """A reply to request ``r``."""

    r: int
    status: str
    data: Any = None


@dataclass(frozen=True)
class Push:
    """Data the server pushes: ``action`` ``"d"`` (set ``path`` to ``data``) or ``"m"``
    (set each relative path of ``data`` below ``path``)."""

    action: str
    path: tuple[str, ...]
    data: Any


@dataclass(frozen=True)
class Hello:
    """The server's hello."""

    ts: int
    version: str
    session: str


@dataclass(frozen=True)
class ControlError:
    """The server could not read one of our frames."""

    code: str
    error: str


def decode_server(text: str | bytes) -> Reply | Push | Hello | ControlError:
    """Read one server frame (the client's side).

    Raises:
        BadMessage: not JSON, or not one of the four shapes above.
    """
    try:
        message = _loads(text)
    except BadRequest as error:
        raise BadMessage(error.code, str(error)) from None
    try:
        kind, inner = message["t"], message["d"]
        if kind == "c":
            body = inner["d"]
            if inner["t"] == "h":
                return Hello(int(body["ts"]), str(body["v"]), str(body["s"]))
            if inner["t"] == "e":
                return ControlError(str(body["code"]), str(body["error"]))
        elif kind == "d" and "r" in inner:
            return Reply(int(inner["r"]), str(inner["b"]["s"]), inner["b"].get("d"))
        elif kind == "d" and inner.get("a") in ("d", "m"):
            return Push(inner["a"], parse_path(inner["b"]["p"]), inner["b"]["d"])
    except (KeyError, TypeError, ValueError):
        pass
    raise BadMessage(ErrorCode.BAD_SHAPE, f"not a database frame: {str(text)[:80]!r}")
