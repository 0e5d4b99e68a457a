"""What went wrong with a tracking server, told in one line, and waits that end.

A team server can be gone (connection refused), stall (it accepts requests and never answers),
refuse (HTTP 401/403: credentials or `--allowed-hosts`) or fail otherwise (another HTTP status);
`describe` gives each its own line. MLflow's own HTTP defaults let one call wait many minutes on
a stalled server, so `apply_http_defaults` bounds every call (`call_bound_s`), and once a call
has shown the server gone or stalled, `give_up` makes the stage's remaining calls (those that end
its run) try once, briefly: the stage ends soon after the first call that met the fault.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

# Set with os.environ.setdefault: a user's own setting wins. One call waits at most
# call_bound_s() for these values: 3 tries of 20 s, one backoff of 2-3 s between the last two.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",  # seconds without an answer, per try
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1",
    # A Retry-After header would otherwise set the wait, unbounded.
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}
# After the server was found gone or stalled: what ending the run may still cost, per call.
GIVE_UP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
# MLflow's defaults and urllib3's cap on one backoff, for a bound under the user's own settings.
_MLFLOW_DEFAULTS = {"timeout": 120.0, "retries": 7, "factor": 2.0, "jitter": 1.0}
_BACKOFF_MAX_S = 120.0

GONE, STALLED, DENIED, HTTP, OTHER = "gone", "stalled", "denied", "http", "other"
EMBEDDED = "unset MLFLOW_TRACKING_URI to track into the embedded mlflow.db"
_GONE_TYPES = {
    "NewConnectionError",
    "ConnectTimeoutError",
    "NameResolutionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "RemoteDisconnected",
    "ProtocolError",
}
_GONE_REASONS = (
    r"\[Errno -?\d+\] [^\"'()]+",
    r"Remote end closed connection without response",
    r"Connection (?:aborted|reset by peer)",
    r"timed out\. \(connect timeout=[\d.]+\)",
)


def apply_http_defaults() -> None:
    """HTTP_DEFAULTS into the environment where unset: MLflow reads them at each request."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def call_bound_s() -> float:
    """The longest one MLflow call can wait on a server that never answers, for the settings in
    the environment: every try's timeout plus urllib3's backoffs (none before the first retry,
    then factor × 2^(n-1) plus up to `jitter`, each capped at 120 s)."""
    env = os.environ
    timeout = float(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT", _MLFLOW_DEFAULTS["timeout"]))
    retries = int(env.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", _MLFLOW_DEFAULTS["retries"]))
    factor = float(env.get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", _MLFLOW_DEFAULTS["factor"]))
    jitter = float(env.get("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", _MLFLOW_DEFAULTS["jitter"]))
    backoffs = sum(
        min(_BACKOFF_MAX_S, factor * 2 ** (n - 1) + jitter) for n in range(2, retries + 1)
    )
    return (retries + 1) * timeout + backoffs


def classify(err: BaseException) -> tuple[str, str]:
    """(kind, detail) of a failed tracking call: GONE with the reason, STALLED with the seconds
    each try waited, DENIED or HTTP with the status, else OTHER. MLflow wraps the requests and
    urllib3 errors it meets, so the whole __cause__/__context__ chain is read."""
    chain = _chain(err)
    names = {type(e).__name__ for e in chain}
    text = " ".join(" ".join(str(e).split()) for e in chain)
    if "ReadTimeoutError" in names or "ReadTimeout" in names or "Read timed out" in text:
        seconds = re.search(r"read timeout=([\d.]+)", text)
        return STALLED, seconds.group(1) if seconds else os.environ.get(
            "MLFLOW_HTTP_REQUEST_TIMEOUT", str(_MLFLOW_DEFAULTS["timeout"])
        )
    if names & _GONE_TYPES or "Failed to establish a new connection" in text:
        for pattern in _GONE_REASONS:
            if found := re.search(pattern, text):
                return GONE, found.group(0).strip()
        return GONE, "the connection failed"
    status = _status(err, text)
    if status in (401, 403):
        return DENIED, str(status)
    if status is not None:
        return HTTP, str(status)
    return OTHER, ""


def lost(err: BaseException) -> bool:
    """Whether `err` shows the server gone or stalled (not a refusal: that one answers)."""
    return classify(err)[0] in (GONE, STALLED)


def not_reachable(uri: str, reason: str) -> str:
    return f"MLflow tracking server {uri} is not reachable ({reason}); start it, or {EMBEDDED}"


def no_answer(uri: str, seconds: str, what: str = "") -> str:
    return (
        f"MLflow tracking server {uri} did not answer{what} within {seconds} s; check that it is "
        f"not stuck or overloaded (its log, its database), raise MLFLOW_HTTP_REQUEST_TIMEOUT, "
        f"or {EMBEDDED}"
    )


def describe(uri: str, err: BaseException) -> str:
    """One line for a failed tracking call: the server, what happened, and what to do."""
    message = " ".join(str(err).split())
    if not uri.startswith(("http://", "https://")):
        return f"MLflow store {uri}: {message[:200]}"
    kind, detail = classify(err)
    if kind == GONE:
        return not_reachable(uri, detail)
    if kind == STALLED:
        return no_answer(uri, detail)
    body = message.split("Response body:", 1)[-1].strip(" '\"")[:160]
    if kind == DENIED and str(detail).startswith("401"):  # a sign-in server: who is asking
        return (
            f"MLflow tracking server {uri} asks to sign in (HTTP {detail}: {body}); set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to "
            f"an account it knows, or {EMBEDDED}"
        )
    if kind == DENIED:  # the host refused (--allowed-hosts), or the account lacks a permission
        return (
            f"MLflow tracking server {uri} refused the request (HTTP {detail}: {body}); check "
            "its --allowed-hosts and your credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD or "
            f"MLFLOW_TRACKING_TOKEN), or {EMBEDDED}"
        )
    if kind == HTTP:
        return (
            f"MLflow tracking server {uri} answered HTTP {detail} ({body}); see the server's "
            f"log, or {EMBEDDED}"
        )
    return f"MLflow tracking server {uri}: {message[:200]}"


def give_up() -> None:
    """The server is gone or stalls: each later call in this process tries once and waits at
    most GIVE_UP's timeout, so ending the stage's run costs seconds, not another bound each."""
    os.environ.update(GIVE_UP)


@contextmanager
def watched() -> Iterator[None]:
    """Re-raises every error; one that shows the server gone or stalled first calls `give_up`."""
    try:
        yield
    except Exception as err:
        if lost(err):
            give_up()
        raise


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[object] = [err]
    while pending and len(seen) < 32:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is s for s in seen):
            continue
        seen.append(current)
        # urllib3's MaxRetryError and urllib's URLError keep their cause in `reason`
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
    return seen


def _status(err: BaseException, text: str) -> int | None:
    from mlflow.exceptions import RestException

    if isinstance(err, RestException):
        return int(err.get_http_status_code())
    found = re.search(r"error code (\d{3})|too many (\d{3}) error responses", text)
    return int(found.group(1) or found.group(2)) if found else None
