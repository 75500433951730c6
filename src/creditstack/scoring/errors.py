"""Scoring errors. Each states one fact and has a stable code starting with `scoring.`."""

from __future__ import annotations

from creditstack.core.errors import BusinessRuleViolated, NotFound, ValidationFailed


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
    http_status = 503  # the server's model is unusable, not the request
    title = "Model unavailable"


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


class FeaturesMissing(ScoringError):
    """The feature dict lacks inputs the model needs; send every input, `null` for a value that is missing."""

    code = "scoring.features_missing"


class FeatureTypeInvalid(ScoringError):
    """A feature value has the wrong type: numbers (or `null`) for numeric inputs, text for categories."""

    code = "scoring.feature_type_invalid"


class ModelInputsUnavailable(ScoringError):
    """The model needs inputs the feature store does not compute, so it cannot score customers from the store."""

    code = "scoring.model_inputs_unavailable"
    http_status = 503  # the platform's champion does not fit its store: a configuration fault, not the request's
    title = "Model unavailable"


class ScoreRequestInvalid(ScoringError):
    """A score request names a customer or gives features: exactly one of the two."""

    code = "scoring.score_request_invalid"


class CustomerUnknown(NotFound):
    """The feature store has no event of this customer before the as-of date."""

    code = "scoring.customer_unknown"


class FeatureStoreBehind(BusinessRuleViolated):
    """The feature store's consumer lags the outbox by more events than a read may catch up; run
    `creditstack scoring features update`."""

    code = "scoring.feature_store_behind"
    http_status = 503
    title = "Feature store behind"


class EventsOutOfSequence(BusinessRuleViolated):
    """A batch of outbox events given to the feature store does not continue from its consumer's position."""

    code = "scoring.events_out_of_sequence"


class AsOfNotServable(BusinessRuleViolated):
    """The feature store keeps the present, not the past: an as-of date before a customer's latest event is
    recomputed from history instead (`FeatureStore.recompute`)."""

    code = "scoring.as_of_not_servable"
