"""The one error type a user sees: a bad input or config, told in one line before any work starts."""


class InputError(ValueError):
    """An input image or setting the pipeline cannot use; the message is one line for the user."""
