"""Compatibility only: the credential report parsing moved to ``payloads.py``.

``revoker.py`` (being rewritten into per-action specs) still imports ``ROOT_ROW`` from here;
delete this module once it imports from ``connectors.aws_iam.payloads``.
"""

from __future__ import annotations

from connectors.aws_iam.payloads import ROOT_ROW

__all__ = ["ROOT_ROW"]
