"""Every failure message the setup can print, found in the code — so docs/troubleshooting.md can be kept complete.

Sources:
- `fail "CAUSE" "FIX"` calls in scripts/*.sh (scripts/common.sh prints them as `[FAIL] CAUSE` / `Fix: FIX`);
- `Line(ok, "TEXT", "FIX")` in src/pgmlkit/check.py (printed as `[FAIL] TEXT` / `Fix: FIX` by notebook 00
  and `make check`).

A message is a template: the parts that vary ($url, ${out##*FATAL:  }, $(...), {name} in an f-string)
match any text on one line. The troubleshooting page may write them as <url>, <reason>, ….

    python tools/fail_messages.py             # every message, as a template
    python tools/fail_messages.py --missing   # those that docs/troubleshooting.md does not cover (exit 1)
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CHECK = ROOT / "src" / "pgmlkit" / "check.py"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"

VARIABLE = None      # a part of a template that varies


@dataclass(frozen=True)
class Message:
    source: str                     # "scripts/db.sh:24"
    cause: tuple                    # literal strings and VARIABLE
    fix: tuple | None               # None when the fix is computed at run time

    @staticmethod
    def show(parts) -> str:
        return "".join("<…>" if p is VARIABLE else p for p in parts)

    def __str__(self) -> str:
        text = f"{self.source}: [FAIL] {self.show(self.cause)}"
        return text + (f"\n    Fix: {self.show(self.fix)}" if self.fix else "")


def pattern(parts) -> re.Pattern:
    """A regex for the template; the varying parts match any text within the line."""
    body = "".join(r"[^\n]*?" if p is VARIABLE else re.escape(p) for p in parts)
    return re.compile(body)


def covered(parts, text: str) -> bool:
    return bool(pattern(parts).search(text))


# --- bash --------------------------------------------------------------------------------------
def _skip_balanced(s: str, i: int, open_ch: str, close_ch: str) -> int:
    """s[i] is just after an opening bracket; return the index after the matching close (quotes respected)."""
    depth, quote = 1, None
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced brackets")


def _double_quoted(s: str, i: int) -> tuple[list, int]:
    """Parse a bash double-quoted string starting at s[i] == '"'; return (parts, index after it)."""
    assert s[i] == '"'
    i += 1
    parts, literal = [], []

    def flush():
        if literal:
            parts.append("".join(literal))
            literal.clear()

    while i < len(s):
        c = s[i]
        if c == '"':
            flush()
            return parts, i + 1
        if c == "\\" and i + 1 < len(s) and s[i + 1] in '"$`\\':
            literal.append(s[i + 1])
            i += 2
        elif c == "\\" and i + 1 < len(s) and s[i + 1] == "\n":
            i += 2
        elif c == "$" and s.startswith("$(", i):
            flush(); parts.append(VARIABLE)
            i = _skip_balanced(s, i + 2, "(", ")")
        elif c == "$" and s.startswith("${", i):
            flush(); parts.append(VARIABLE)
            i = _skip_balanced(s, i + 2, "{", "}")
        elif c == "$" and i + 1 < len(s) and (s[i + 1].isalnum() or s[i + 1] in "_?#@*!"):
            flush(); parts.append(VARIABLE)
            i += 2 if not (s[i + 1].isalpha() or s[i + 1] == "_") else 1
            while i < len(s) and (s[i].isalnum() or s[i] == "_"):
                i += 1
        elif c == "`":
            flush(); parts.append(VARIABLE)
            i = s.index("`", i + 1) + 1
        else:
            literal.append(c)
            i += 1
    raise ValueError("unterminated string")


FAIL_CALL = re.compile(r'(?<![\w-])fail\s+(?=")')


def script_messages(path: Path) -> list[Message]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FAIL_CALL.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if text[text.rfind("\n", 0, match.start()) + 1: match.start()].lstrip().startswith("#"):
            continue                                    # a comment that mentions fail "..."
        cause, i = _double_quoted(text, match.end())
        while i < len(text) and text[i] in " \t\\\n":
            i += 1
        fix = None
        if i < len(text) and text[i] == '"':
            fix, _ = _double_quoted(text, i)
        found.append(Message(f"scripts/{path.name}:{line}", tuple(cause), tuple(fix) if fix else None))
    return found


# --- check.py ----------------------------------------------------------------------------------
def _string_parts(node, constants: dict) -> tuple | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.JoinedStr):
        return tuple(v.value if isinstance(v, ast.Constant) else VARIABLE for v in node.values)
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return None


def check_messages(path: Path = CHECK) -> list[Message]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            parts = _string_parts(node.value, {})
            if parts:
                constants[node.targets[0].id] = parts
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Line" and len(node.args) >= 2):
            continue
        ok = node.args[0]
        if isinstance(ok, ast.Constant) and ok.value is True:
            continue                                     # an [ OK ] line only
        cause = _string_parts(node.args[1], constants)
        fix = _string_parts(node.args[2], constants) if len(node.args) > 2 else None
        if cause:
            found.append(Message(f"src/pgmlkit/check.py:{node.lineno}", cause, fix))
    return found


def all_messages() -> list[Message]:
    messages = []
    for path in sorted(SCRIPTS.glob("*.sh")):
        messages += script_messages(path)
    return messages + check_messages()


def missing(doc: Path = TROUBLESHOOTING) -> list[tuple[Message, str]]:
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    gaps = []
    for message in all_messages():
        if not covered(message.cause, text):
            gaps.append((message, "cause"))
        elif message.fix and not covered(message.fix, text):
            gaps.append((message, "fix"))
    return gaps


def main(argv: list[str]) -> int:
    if "--missing" in argv:
        gaps = missing()
        for message, part in gaps:
            print(f"not in docs/troubleshooting.md ({part}): {message}")
        print(f"{len(gaps)} of {len(all_messages())} messages missing")
        return 1 if gaps else 0
    for message in all_messages():
        print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
