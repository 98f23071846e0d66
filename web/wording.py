"""Words for codes people should not have to read: processor decline codes, attempt outcomes.

The staff pages' words for a decline code are `billing.plain_words.staff_decline_reason`, the same as the agency's
notices use (one map); the client's words are `billing.plain_words.client_decline_reason`.
"""

from __future__ import annotations

from billing.plain_words import STAFF_DECLINE_REASONS as DECLINE_REASONS
from billing.plain_words import staff_decline_reason as decline_reason

__all__ = ["DECLINE_REASONS", "decline_reason"]
