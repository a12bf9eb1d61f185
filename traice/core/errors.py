"""The one error type a user sees: a bad input or config, told in one line before any work starts."""


class InputError(ValueError):
    """An input image or setting the pipeline cannot use; the message is one line for the user."""


def check_radius_range(what: str, radii) -> None:
    """InputError unless ``radii`` is [smallest, largest] µm with 0 < smallest <= largest."""
    if len(radii) != 2 or not 0 < radii[0] <= radii[1]:
        raise InputError(f"{what} {list(radii)}: expected [smallest, largest] with 0 < smallest <= largest")
