"""Answer extraction and grading, shared by training rewards, probes and reports.

Every math score carries two numbers, because the GSM8K baseline moves by 10+ points with the extractor:
  * strict  - the answer is in the requested format (`#### N` for GSM8K, `\\boxed{...}` for MATH);
  * lenient - the answer is right wherever it is (last number for GSM8K; for MATH the last boxed answer,
              else the last `$...$` or number in the text).
strict <= lenient by construction for GSM8K; their gap is format compliance, not reasoning.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ---- GSM8K --------------------------------------------------------------------------------------------

_STRICT = re.compile(r"####\s*(-?[$]?\s*[0-9][0-9,]*(?:\.[0-9]+)?)")
# A number as people write it: optional sign and $, thousands commas, decimals. Commas only between digit
# groups of three, so "3,4" in a list reads as two numbers rather than 34.
_NUMBER = re.compile(r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def normalize_number(text: str) -> Decimal | None:
    """'$1,234.50' -> 1234.5, '18.' -> 18, '-3.0' -> -3; None if `text` holds no number."""
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value.normalize() if value == value.to_integral_value() else value


def gsm8k_gold(answer: str) -> Decimal:
    """The reference number after `####` in a GSM8K solution."""
    value = gsm8k_strict(answer)
    if value is None:
        raise ValueError(f"GSM8K solution without '#### N': {answer[-80:]!r}")
    return value


def gsm8k_strict(text: str) -> Decimal | None:
    """The number after the last `#### ` marker, or None: the format the task asks for."""
    found = _STRICT.findall(text)
    return normalize_number(found[-1]) if found else None


def gsm8k_lenient(text: str) -> Decimal | None:
    """The last number anywhere in the text (units and currency ignored), or None."""
    text = re.sub(r"<<[^>]*>>", "", text)  # calculator annotations repeat intermediate results
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


@dataclass(frozen=True)
class Grade:
    """One graded completion: `strict` needs the requested format, `lenient` only the right value."""

    strict: bool
    lenient: bool
    extracted: str | None


def grade_gsm8k(completion: str, gold: str | Decimal) -> Grade:
    target = gold if isinstance(gold, Decimal) else gsm8k_gold(gold) if "####" in gold else normalize_number(gold)
    strict, lenient = gsm8k_strict(completion), gsm8k_lenient(completion)
    shown = strict if strict is not None else lenient
    return Grade(strict is not None and strict == target, lenient is not None and lenient == target,
                 None if shown is None else str(shown))


# ---- MATH ---------------------------------------------------------------------------------------------

def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces included; `\\boxed 5` too."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (6 if text.startswith("\\boxed", start) else 5)
    if i < len(text) and text[i] == " ":  # "\boxed 5": the argument is the next token
        m = re.match(r"\s*([^\s$]+)", text[i:])
        return m.group(1) if m else None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the completion was truncated inside the box


def _canonical(expr: str) -> str:
    expr = re.sub(r"\\(?:left|right|!|,|;|:|\s)", "", expr)
    expr = re.sub(r"\\(?:text|mbox|mathrm)\{([^}]*)\}", r"\1", expr)
    expr = expr.replace("dfrac", "frac").replace("tfrac", "frac").replace("^\\circ", "").replace("^{\\circ}", "")
    return re.sub(r"\s+", "", expr).rstrip(".").strip("$")


def _verify_main_thread(gold: str, pred: str, timeout: int) -> bool:
    from math_verify import parse, verify

    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
    pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
    return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def _worker_loop(conn) -> None:  # runs in the worker process's main thread, where signal.alarm works
    while True:
        gold, pred, timeout = conn.recv()
        try:
            conn.send(_verify_main_thread(gold, pred, timeout))
        except Exception:  # a parse/verify failure is a wrong answer, not a crash
            conn.send(False)


class _Verifier:
    """math-verify off the main thread: a killable worker process instead of signal.alarm.

    math-verify's own timeout uses SIGALRM, which only works on the main thread; a thread cannot be killed
    when sympy hangs, so a hang past the deadline kills and restarts the worker process instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: mp.Process | None = None
        self._conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True)
        self._proc.start()
        self._conn = parent

    def __call__(self, gold: str, pred: str, timeout: int) -> bool:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            self._conn.send((gold, pred, timeout))
            if self._conn.poll(timeout * 3 + 30):  # generous: the first call pays the import
                return self._conn.recv()
            self._proc.kill()
            self._proc = None
            return False


_VERIFIER = _Verifier()


def math_equal(gold: str, pred: str | None, timeout: int = 5) -> bool:
    """Is `pred` mathematically equal to `gold`? String match first, then math-verify under a timeout."""
    if pred is None:
        return False
    if _canonical(gold) == _canonical(pred):
        return True
    if threading.current_thread() is threading.main_thread():
        try:
            return _verify_main_thread(gold, pred, timeout)
        except Exception:
            return False
    return _VERIFIER(gold, pred, timeout)


_LAST_DOLLAR = re.compile(r"\$([^$]+)\$(?!.*\$)", re.S)


def grade_math(completion: str, gold: str, timeout: int = 5) -> Grade:
    """strict: the last `\\boxed{}` equals gold; lenient: that, or the last `$...$`/number when unboxed."""
    boxed = last_boxed(completion)
    strict = math_equal(gold, boxed, timeout)
    if boxed is not None:
        return Grade(strict, strict, boxed)
    m = _LAST_DOLLAR.search(completion)
    fallback = m.group(1) if m else (_NUMBER.findall(completion) or [None])[-1]
    return Grade(False, math_equal(gold, fallback, timeout), fallback)
