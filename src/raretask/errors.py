"""Error types shared by the whole package."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid.

    The message names the offending field and the allowed range, so the CLI can print it on
    one line (``raretask: error: invalid <field>: ...``) and exit with status 2.
    """

    def __init__(self, field: str, problem: str, allowed: str | None = None):
        self.field = field
        self.problem = problem
        self.allowed = allowed
        msg = f"invalid {field}: {problem}"
        if allowed:
            msg += f" (allowed: {allowed})"
        super().__init__(msg)

    def __reduce__(self):  # so it crosses a process boundary (a sweep worker) as itself
        return (type(self), (self.field, self.problem, self.allowed))


class RaretaskError(RuntimeError):
    """A run cannot go on (a folder in use or corrupt, a cluster out of reach, a diverged
    loss): one line ``raretask: error: ...`` and exit status 1. The message says what to do."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so the same clean-up as Ctrl-C runs (workers
    stopped and joined, locks released); the CLI exits 128 + ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def parse_assignment(item: str) -> tuple[list[str], object]:
    """``--set`` syntax shared by studies and LM sweeps: ``a.b=VALUE`` -> (["a", "b"], value);
    the value is parsed as JSON, else kept as a plain string."""
    import json

    if "=" not in item:
        raise ConfigError("set", f"{item!r} is not key=value", "e.g. --set train.steps=2000")
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


class RaretaskWarning(UserWarning):
    """Something will run but probably not as meant (a warm-up longer than the run): the CLI
    prints one line ``raretask: warning: ...`` on stderr and goes on."""


class RaretaskNote(RaretaskWarning):
    """Information the user should see once (files --restart kept): ``raretask: note: ...``."""
