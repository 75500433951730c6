"""Scoring: a model engine for credit risk on any tabular data, and credit scores from platform behaviour.

The context owns two model kinds, both calibrated to a probability of default (PD) on a held-out fold and
put on a points-to-double-the-odds score scale (`domain.ScoreScale`, default 600 points at 50:1 good:bad
odds, 20 PDO, clipped to 300–900):

- a WoE logistic **scorecard** (optbinning `BinningProcess` + `Scorecard`, monotonic bins), exported to a
  JSON points table and served by a numpy-only scorer (`scorecard`);
- a **LightGBM** challenger with monotone constraints inferred in the training fold, stored as LightGBM's
  model text plus a JSON calibration map (`gbm`).

Both give at most four reason codes per score, one per characteristic group (`domain.Reason`). Models live
in a directory registry (`registry`) as hashed JSON/text artefacts — never pickle — with the training-data
fingerprint, parameters and validation metrics; a model is verified by hash before it scores.
Messy columns (percent strings, sentinel codes such as 96/98, missing values, unseen categories) are
cleaned by a fitted, JSON-serialisable preprocessing spec (`columns`). Metrics, PSI/CSI monitoring and the
fairness report are in `metrics`, the HTML validation report in `report`, the repeated cross-validation
harness in `evaluation`, and the `creditstack scoring` commands in `cli`.

On the platform: the feature store (`features`, kept up to date from the outbox and recomputable from
history), serving (`serving`: a hash-verified model scoring feature dicts in-process, numpy only, and in
batch), `ScoringService` (`service`, `Platform.scoring`), `POST /v1/scoring/score` (`api`) and lending's
score provider (`provider.ModelScoreProvider`). See README.md.

Error codes start with `scoring.` (see `errors`).
"""
