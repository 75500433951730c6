"""Analytics errors. Each states one fact and has a stable code starting with `analytics.`."""

from __future__ import annotations

from creditstack.core.errors import ValidationFailed


class AnalyticsInputInvalid(ValidationFailed):
    """A row or argument handed to portfolio arithmetic is unusable (missing field, float, negative, duplicate)."""

    code = "analytics.input_invalid"
