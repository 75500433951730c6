"""Scoring errors. Each states one fact and has a stable code starting with `scoring.`."""

from __future__ import annotations

from creditstack.core.errors import NotFound, ValidationFailed


class ScoringError(ValidationFailed):
    """A scoring request or artefact is not usable."""

    code = "scoring.error"


class DataUnreadable(ScoringError):
    """The data file cannot be read as a delimited table with a header row."""

    code = "scoring.data_unreadable"


class TargetColumnMissing(ScoringError):
    """The target column named for training or evaluation is not in the data."""

    code = "scoring.target_column_missing"


class TargetNotBinary(ScoringError):
    """The target column does not separate into exactly one bad value and the rest, with both present."""

    code = "scoring.target_not_binary"


class TooFewRows(ScoringError):
    """There are too few rows (or too few goods or bads) to fit or evaluate a model."""

    code = "scoring.too_few_rows"


class NoUsableFeatures(ScoringError):
    """After dropping the target, identifiers, constant and excluded columns no feature is left."""

    code = "scoring.no_usable_features"


class ProtectedAttributeAsInput(ScoringError):
    """A protected attribute was named as a model input; protected attributes are never model inputs."""

    code = "scoring.protected_attribute_as_input"


class InvalidScoreScale(ScoringError):
    """The score scale parameters are out of range (PDO and odds must be positive, min below max)."""

    code = "scoring.invalid_score_scale"


class UnknownModelKind(ScoringError):
    """The model kind is neither `scorecard` nor `gbm`."""

    code = "scoring.unknown_model_kind"


class ModelNotFound(NotFound):
    """No model artefact (manifest) exists at the given location or under the given id."""

    code = "scoring.model_not_found"


class ModelIntegrityFailed(ScoringError):
    """A model artefact does not match the content hash in its manifest; it will not score."""

    code = "scoring.model_integrity_failed"


class PickleRefused(ScoringError):
    """A model directory holds a pickle (or joblib) file; creditstack never loads pickled models."""

    code = "scoring.pickle_refused"


class ModelFormatUnsupported(ScoringError):
    """The model artefact's format or version is not one this release reads."""

    code = "scoring.model_format_unsupported"


class RoleUnknown(ScoringError):
    """A registry role must be `champion` or `challenger`."""

    code = "scoring.role_unknown"


class ProtectedAttributeMissing(ScoringError):
    """The protected attribute named for the fairness report is not in the data."""

    code = "scoring.protected_attribute_missing"
