"""Exceptions for problems the user can fix (bad params, missing data, corrupt files).

The command-line entry points print these as one line and exit non-zero, without
a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, explained in one line."""


class ConfigError(UserError):
    """An invalid value, type or key in params.yaml."""


class DataError(UserError):
    """A dataset or artifact that is missing, unreadable or inconsistent."""
