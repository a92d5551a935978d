"""Errors shared by every subsystem."""


class CommandError(Exception):
    """A failure the user can fix (bad input, missing file, bad option).

    The CLI prints it without a traceback and exits with code 2; library
    callers can catch it. The message must name the file / row / key at fault.
    """
