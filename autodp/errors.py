"""The one error kind that is the user's to fix: launch.py prints its message alone (no
traceback) and exits with status 2. Its messages name the file, line, field or config key."""


class UserError(ValueError):
    """Bad input or a bad command line, found before or during a run."""
