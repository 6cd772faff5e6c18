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
