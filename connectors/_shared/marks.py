"""How a secret's tags, labels or metadata name its owner and mark it as a signing key.

AWS tags, GCP labels and annotations and Vault custom metadata are all string maps whose keys
people type by hand (``Owner``, ``owner``): keys are compared casefolded, and so are the values
that mark a signing key (``purpose=Signing``). An owner's value keeps its case: it names a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def owner_from(values: Mapping[str, object], keys: Sequence[str]) -> str | None:
    """The first non-blank value under one of ``keys`` (in their order), stripped."""
    folded = {str(k).casefold(): v for k, v in values.items() if v is not None}
    for key in keys:
        value = str(folded.get(key.casefold()) or "").strip()
        if value:
            return value
    return None


def is_signing(values: Mapping[str, object], marks: Iterable[tuple[str, str]]) -> bool:
    """Whether one of the casefolded ``(key, value)`` ``marks`` is set in ``values``."""
    folded = {str(k).casefold(): str(v).casefold() for k, v in values.items() if v is not None}
    return any(folded.get(key) == value for key, value in marks)
