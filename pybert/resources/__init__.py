"""Files shipped with pybert: BERT's uncased vocab and its sample pre-training text."""

from importlib import resources


def resource_path(name: str) -> str:
    """Path of a packaged file, e.g. resource_path("vocab_uncased.txt")."""
    return str(resources.files("pybert.resources").joinpath(name))


def sample_text_path() -> str:
    return resource_path("sample_text.txt")


def vocab_uncased_path() -> str:
    return resource_path("vocab_uncased.txt")
