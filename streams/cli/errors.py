"""What the command line reports to its user as one line."""


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, no traceback."""
