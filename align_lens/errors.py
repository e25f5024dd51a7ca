"""Errors for inputs align_lens cannot use; each message says how to fix the input."""


class OntologyError(ValueError):
    """An ontology that cannot be used as given; the message says how to fix it."""
