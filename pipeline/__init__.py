"""Orchestration around the `unlearn` library: DVC stages, MLflow tracking, the Prefect flow."""
