"""One exception type for every mistake a user can make.

The CLI turns a `TinyevalError` into a one-line message and a non-zero exit, so every check that guards
user input raises this instead of letting a library traceback escape.
"""


class TinyevalError(Exception):
    """A user-facing error: its message alone must tell what went wrong and how to fix it."""
