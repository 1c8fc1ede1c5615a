"""Security rules, a subset of Firebase's, evaluated by a whitelisted expression walker.

Rules are a JSON tree that mirrors the data::

    {"rules": {
        "messages": {
            ".read": "auth != null",
            "$id": {
                ".write": "auth != null && (!data.exists() || data.child('uid').val() == auth.uid)",
                ".validate": "newData.hasChildren(['uid', 'text']) && newData.child('text').isString()",
                "uid": {".validate": "newData.val() == auth.uid"},
            },
        },
    }}

* ``.read`` and ``.write`` **grant** access, and a grant **cascades** down: once a rule at a
  path or above says yes, nothing deeper can say no.  Without any grant, the answer is no.
* ``.validate`` does **not** cascade: after a write is granted, every ``.validate`` on the
  way down to the written path and inside the written value must hold (only where the new
  data is not null: deleting is never refused by ``.validate``).
* ``$name`` keys match any child the literal keys do not, and capture its key as ``$name``.
* In an expression: ``auth`` (``null`` or the connection's claims, e.g. ``auth.uid``),
  ``data`` (the data before the write, at the rule's path), ``newData`` (after), ``root``
  (the whole tree before), ``now`` (ms since 1970), the ``$`` variables, JSON literals,
  ``== != === !== < <= > >= && || ! + - * / %``, and only these methods:
  snapshots' ``val() child(path) parent() exists() hasChild(path) hasChildren([keys])
  isString() isNumber() isBoolean()``, strings' ``length contains() beginsWith()
  endsWith() toLowerCase() toUpperCase()``.

An expression is translated to Python syntax (``&&`` → ``and``, ``$uid`` → ``_uid``...),
parsed with :mod:`ast`, checked node by node against a whitelist when the rules are
compiled, and evaluated by walking the tree: never ``eval``, never ``exec``.  ``!`` is
Python's ``not`` (it binds looser than ``==``: write ``!(a == b)``).  An expression that
fails at run time (a method on null, a string minus a number) is false, as in Firebase.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from course.wire.tree import TreeError, Value, check_key, get, join_path, parse_path

__all__ = ["RulesError", "Expression", "RuleNode", "RuleSnapshot", "Decision", "PERMISSION_DENIED",
           "MAX_EXPRESSION_CHARS", "compile_expression", "evaluate", "compile_rules", "can_read",
           "can_write", "OPEN_RULES", "LOCKED_RULES", "SNAPSHOT_METHODS", "STRING_METHODS"]

PERMISSION_DENIED = "permission_denied"  #: the status of a refused read or write
MAX_EXPRESSION_CHARS = 2048  #: longer expressions are refused when compiled
_MAX_NODES = 400
OPEN_RULES = {"rules": {".read": True, ".write": True}}   #: everybody reads and writes
LOCKED_RULES = {"rules": {".read": False, ".write": False}}  #: nobody does (Firebase's default)

_VARIABLES = {"auth", "data", "newData", "root", "now"}
SNAPSHOT_METHODS = {"val", "child", "parent", "exists", "hasChild", "hasChildren", "isString",
                    "isNumber", "isBoolean"}
STRING_METHODS = {"contains", "beginsWith", "endsWith", "toLowerCase", "toUpperCase"}
_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
          ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Compare, ast.Eq, ast.NotEq,
          ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Constant, ast.Name, ast.Attribute, ast.Call,
          ast.List, ast.Load)
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_WORDS = {"null": "None", "true": "True", "false": "False"}
_OPERATORS = {"===": "==", "!==": "!=", "&&": "and", "||": "or", "!": "not"}


class RulesError(ValueError):
    """Rules or an expression that cannot be compiled (raised when they are loaded)."""


@dataclass(frozen=True)
class Expression:
    """A compiled rule: the source text and its checked syntax tree (or a constant)."""

    source: str
    tree: ast.Expression | None = None
    constant: bool | None = None


def _translate(source: str) -> str:
    # JavaScript-flavoured tokens to Python ones; strings are kept as they are
    out = []
    position = 0
    pattern = re.compile(r"""\s+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|===|!==|==|!=|<=|>=|&&|\|\||"""
                         r"""[!<>+\-*/%(),.\[\]]|\$?[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?""")
    while position < len(source):
        match = pattern.match(source, position)
        if match is None:
            raise RulesError(f"unexpected character {source[position]!r} at {position} in {source!r}")
        token = match.group()
        position = match.end()
        if token.startswith("$"):
            if not _IDENTIFIER.match(token[1:]):
                raise RulesError(f"bad variable {token!r} in {source!r}")
            out.append("_" + token[1:])
        elif token[0] == "_":
            raise RulesError(f"names cannot start with '_': {token!r} in {source!r}")
        elif token in _OPERATORS:
            out.append(f" {_OPERATORS[token]} ")
        elif token in _WORDS:
            out.append(_WORDS[token])
        else:
            out.append(token)
    return "".join(out)


def _check(tree: ast.AST, variables: set[str], source: str) -> None:
    count = 0
    for node in ast.walk(tree):
        count += 1
        if not isinstance(node, _NODES):
            raise RulesError(f"{type(node).__name__} is not allowed in a rule: {source!r}")
        if isinstance(node, ast.Constant) and not (node.value is None or
                                                    isinstance(node.value, (bool, int, float, str))):
            raise RulesError(f"the constant {node.value!r} is not allowed: {source!r}")
        if isinstance(node, ast.Name) and node.id not in _VARIABLES | variables:
            raise RulesError(f"unknown name {node.id!r} in {source!r} (known: "
                             f"{', '.join(sorted(_VARIABLES))}, and the $ variables of the path)")
        if isinstance(node, ast.Attribute) and not _IDENTIFIER.match(node.attr):
            raise RulesError(f"the attribute {node.attr!r} is not allowed: {source!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Attribute) or node.keywords:
                raise RulesError(f"only methods of snapshots and strings may be called: {source!r}")
            if node.func.attr not in SNAPSHOT_METHODS | STRING_METHODS:
                raise RulesError(f"the method {node.func.attr}() is not allowed: {source!r}")
    if count > _MAX_NODES:
        raise RulesError(f"the rule is too complex ({count} nodes, at most {_MAX_NODES})")


def compile_expression(source: str | bool, variables: set[str] | frozenset[str] = frozenset()) -> Expression:
    """Compile one rule expression (or a boolean).

    Args:
        source: the expression, e.g. ``"auth != null && auth.uid == $uid"``.
        variables: the ``$`` variables in scope, without the ``$`` (``{"uid"}``).

    Raises:
        RulesError: too long, a character or a construct outside the whitelist, an unknown
            name or method.
    """
    if isinstance(source, bool):
        return Expression(str(source).lower(), constant=source)
    if not isinstance(source, str):
        raise RulesError(f"a rule is a boolean or a string, got {source!r}")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise RulesError(f"a rule has at most {MAX_EXPRESSION_CHARS} characters")
    text = _translate(source)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise RulesError(f"syntax error in {source!r}: {error.msg}") from None
    _check(tree, {"_" + v for v in variables}, source)
    return Expression(source, tree=tree)


class RuleSnapshot:
    """``data``, ``newData`` and ``root`` in a rule: a tree seen from one path."""

    def __init__(self, tree: Value, keys: tuple[str, ...] = ()) -> None:
        self._tree, self._keys = tree, keys

    def val(self) -> Value:
        """The value here (``None``: no data)."""
        return get(self._tree, self._keys)

    def child(self, path: str) -> "RuleSnapshot":
        """The snapshot at a relative path."""
        return RuleSnapshot(self._tree, self._keys + parse_path(_text(path)))

    def parent(self) -> "RuleSnapshot":
        """The snapshot one level up (the root's parent is the root)."""
        return RuleSnapshot(self._tree, self._keys[:-1])

    def exists(self) -> bool:
        """Whether there is data here."""
        return self.val() is not None

    def hasChild(self, path: str) -> bool:  # noqa: N802 - Firebase's name
        """Whether there is data at a relative path."""
        return self.child(path).exists()

    def hasChildren(self, keys: list[str] | None = None) -> bool:  # noqa: N802
        """Whether it has children (these ones, if given)."""
        value = self.val()
        if not isinstance(value, dict):
            return False
        return True if keys is None else all(_text(k) in value for k in keys)

    def isString(self) -> bool:  # noqa: N802
        """Whether the value here is a string."""
        return isinstance(self.val(), str)

    def isNumber(self) -> bool:  # noqa: N802
        """Whether the value here is a number."""
        value = self.val()
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def isBoolean(self) -> bool:  # noqa: N802
        """Whether the value here is a boolean."""
        return isinstance(self.val(), bool)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_STRING_CALLS = {
    "contains": lambda s, x: _text(x) in s,
    "beginsWith": lambda s, x: s.startswith(_text(x)),
    "endsWith": lambda s, x: s.endswith(_text(x)),
    "toLowerCase": lambda s: s.lower(),
    "toUpperCase": lambda s: s.upper(),
}


def _equal(a: Any, b: Any) -> bool:  # JavaScript's ===: true is not 1
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _walk(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _walk(node.body, env)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.List):
        return [_walk(item, env) for item in node.elts]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_walk(value, env) for value in node.values)
        return any(_walk(value, env) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _walk(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not operand
        if not _number(operand):
            raise TypeError(f"unary minus on {operand!r}")
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _walk(node.left, env), _walk(node.right, env)
        if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            return left + right
        if not (_number(left) and _number(right)):
            raise TypeError(f"arithmetic on {left!r} and {right!r}")
        operation = {ast.Add: lambda: left + right, ast.Sub: lambda: left - right,
                     ast.Mult: lambda: left * right, ast.Div: lambda: left / right,
                     ast.Mod: lambda: left % right}[type(node.op)]
        return operation()
    if isinstance(node, ast.Compare):
        left = _walk(node.left, env)
        for op, right_node in zip(node.ops, node.comparators):
            right = _walk(right_node, env)
            if isinstance(op, ast.Eq):
                ok = _equal(left, right)
            elif isinstance(op, ast.NotEq):
                ok = not _equal(left, right)
            else:
                if not ((_number(left) and _number(right)) or
                        (isinstance(left, str) and isinstance(right, str))):
                    raise TypeError(f"cannot order {left!r} and {right!r}")
                ok = {ast.Lt: left < right, ast.LtE: left <= right,
                      ast.Gt: left > right, ast.GtE: left >= right}[type(op)]
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Attribute):  # not called: auth.uid, auth.token.email, s.length
        owner = _walk(node.value, env)
        if isinstance(owner, dict):
            return owner.get(node.attr)
        if isinstance(owner, str) and node.attr == "length":
            return len(owner)
        raise TypeError(f"{type(owner).__name__} has no attribute {node.attr}")
    if isinstance(node, ast.Call):
        owner = _walk(node.func.value, env)
        name = node.func.attr
        args = [_walk(arg, env) for arg in node.args]
        if isinstance(owner, RuleSnapshot) and name in SNAPSHOT_METHODS:
            return getattr(owner, name)(*args)
        if isinstance(owner, str) and name in _STRING_CALLS:
            return _STRING_CALLS[name](owner, *args)
        raise TypeError(f"{type(owner).__name__} has no method {name}()")
    raise TypeError(f"{type(node).__name__} is not allowed")  # _check refused it already


def evaluate(expression: Expression, *, auth: Mapping[str, Any] | None = None, data: Value = None,
             new_data: Value = None, root: Value = None, now: int = 0,
             variables: Mapping[str, str] | None = None) -> bool:
    """Evaluate one compiled expression; ``True`` only if it yields exactly ``True``.

    Args:
        expression: from :func:`compile_expression`.
        auth: the claims of the connection (``None``: not signed in).
        data, new_data: :class:`RuleSnapshot` (or a plain value, seen at its own root).
        root: the tree before the write (a :class:`RuleSnapshot` or a value).
        now: the server's time in ms.
        variables: the ``$`` captures, without the ``$``.

    Returns:
        The result; an error while evaluating counts as ``False`` (as in Firebase).
    """
    if expression.constant is not None:
        return expression.constant
    env = {"auth": dict(auth) if auth is not None else None, "now": now,
           "data": data if isinstance(data, RuleSnapshot) else RuleSnapshot(data),
           "newData": new_data if isinstance(new_data, RuleSnapshot) else RuleSnapshot(new_data),
           "root": root if isinstance(root, RuleSnapshot) else RuleSnapshot(root)}
    env.update({"_" + k: v for k, v in (variables or {}).items()})
    try:
        return _walk(expression.tree, env) is True
    except (TypeError, ValueError, KeyError, ZeroDivisionError, TreeError, RecursionError, OverflowError):
        return False


@dataclass
class RuleNode:
    """The rules at one level of the rules tree."""

    read: Expression | None = None
    write: Expression | None = None
    validate: Expression | None = None
    children: dict[str, "RuleNode"] = field(default_factory=dict)
    wildcard: tuple[str, "RuleNode"] | None = None  #: ``("uid", node)`` for ``$uid``

    def child(self, key: str) -> tuple["RuleNode", str | None] | None:
        """The rules for child ``key`` and the variable it binds (a literal key wins)."""
        if key in self.children:
            return self.children[key], None
        if self.wildcard is not None:
            return self.wildcard[1], self.wildcard[0]
        return None


def compile_rules(spec: Mapping[str, Any]) -> RuleNode:
    """Compile a rules tree (``{"rules": {...}}`` or the inner object).

    Raises:
        RulesError: an unknown ``.`` key, two ``$`` keys at one level, a bad key, a bad
            expression (the message names the path).
    """
    if isinstance(spec, Mapping) and set(spec) == {"rules"}:
        spec = spec["rules"]
    return _compile(spec, frozenset(), "/")


def _compile(spec: Any, _variables: frozenset[str], _where: str) -> RuleNode:
    if not isinstance(spec, Mapping):
        raise RulesError(f"rules at {_where} must be an object")
    node = RuleNode()
    for key, value in spec.items():
        try:
            if key in (".read", ".write", ".validate"):
                setattr(node, key[1:], compile_expression(value, _variables))
            elif key == ".indexOn":
                continue
            elif key.startswith("."):
                raise RulesError(f"unknown rule {key!r}")
            elif key.startswith("$"):
                name = key[1:]
                if not _IDENTIFIER.match(name):
                    raise RulesError(f"bad variable {key!r}")
                if node.wildcard is not None:
                    raise RulesError(f"two $ variables at one level: ${node.wildcard[0]} and {key}")
                node.wildcard = (name, _compile(value, _variables | {name}, f"{_where.rstrip('/')}/{key}"))
            else:
                check_key(key)
                node.children[key] = _compile(value, _variables, f"{_where.rstrip('/')}/{key}")
        except (RulesError, TreeError) as error:
            if str(error).startswith("at /"):
                raise
            raise RulesError(f"at {_where}: {error}") from None
    return node


@dataclass(frozen=True)
class Decision:
    """The answer of :func:`can_read` / :func:`can_write`: ``allowed``, and why."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _along(rules: RuleNode, keys: tuple[str, ...]):
    # (depth, node, variables) for the root and each level of keys that has rules
    node, variables = rules, {}
    yield 0, node, dict(variables)
    for depth, key in enumerate(keys, 1):
        found = node.child(key)
        if found is None:
            return
        node, name = found
        if name is not None:
            variables[name] = key
        yield depth, node, dict(variables)


def can_read(rules: RuleNode, path: str | tuple[str, ...], *, root: Value,
             auth: Mapping[str, Any] | None = None, now: int = 0) -> Decision:
    """Whether a read (or a listener) at ``path`` is allowed: a ``.read`` at the path or
    above must be true."""
    keys = parse_path(path)
    for depth, node, variables in _along(rules, keys):
        if node.read is not None and evaluate(
                node.read, auth=auth, data=RuleSnapshot(root, keys[:depth]), new_data=RuleSnapshot(root, keys[:depth]),
                root=RuleSnapshot(root), now=now, variables=variables):
            return Decision(True, f".read at {join_path(keys[:depth])} grants it")
    return Decision(False, f"no .read rule grants reading {join_path(keys)}")


def _validate_below(node: RuleNode, keys: tuple[str, ...], variables: dict[str, str],
                    old_root: Value, new_root: Value, auth, now: int) -> str | None:
    value = get(new_root, keys)
    if value is None:
        return None
    if node.validate is not None and not evaluate(
            node.validate, auth=auth, data=RuleSnapshot(old_root, keys),
            new_data=RuleSnapshot(new_root, keys), root=RuleSnapshot(old_root), now=now,
            variables=variables):
        return f".validate at {join_path(keys)} failed: {node.validate.source}"
    if isinstance(value, dict):
        for key in value:
            found = node.child(key)
            if found is None:
                continue
            child, name = found
            child_vars = dict(variables, **({name: key} if name else {}))
            failure = _validate_below(child, keys + (key,), child_vars, old_root, new_root, auth, now)
            if failure:
                return failure
    return None


def can_write(rules: RuleNode, path: str | tuple[str, ...], *, old_root: Value, new_root: Value,
              auth: Mapping[str, Any] | None = None, now: int = 0) -> Decision:
    """Whether a write at ``path`` that turns ``old_root`` into ``new_root`` is allowed.

    A ``.write`` at the path or above must be true (``data``/``newData`` at that rule's
    path); then every ``.validate`` above the path, at it and inside the new value must
    hold where the new data is not null.  Check each path of a multi-path update.
    """
    keys = parse_path(path)
    levels = list(_along(rules, keys))
    for depth, node, variables in levels:
        if node.write is not None and evaluate(
                node.write, auth=auth, data=RuleSnapshot(old_root, keys[:depth]),
                new_data=RuleSnapshot(new_root, keys[:depth]), root=RuleSnapshot(old_root), now=now,
                variables=variables):
            break
    else:
        return Decision(False, f"no .write rule grants writing {join_path(keys)}")
    for depth, node, variables in levels:
        if depth < len(keys):
            if node.validate is not None and get(new_root, keys[:depth]) is not None and not evaluate(
                    node.validate, auth=auth, data=RuleSnapshot(old_root, keys[:depth]),
                    new_data=RuleSnapshot(new_root, keys[:depth]), root=RuleSnapshot(old_root),
                    now=now, variables=variables):
                return Decision(False, f".validate at {join_path(keys[:depth])} failed: "
                                       f"{node.validate.source}")
        else:
            failure = _validate_below(node, keys, variables, old_root, new_root, auth, now)
            if failure:
                return Decision(False, failure)
    return Decision(True, f"write to {join_path(keys)} granted and valid")
