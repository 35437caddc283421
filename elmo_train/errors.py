"""Errors a user can cause: shown as one line and exit code 2, never a traceback."""


class UserError(Exception):
    """A problem with the user's input: a file, an option, a corpus, a weight file.

    The message is one line that says what is wrong, which file or key, and what to do.
    """
