"""The recommendation model's status and its trainings (`recommendationModel`,
`trainRecommendations`). A training is a queued job without an ingestion job's counts: it is
QUEUED or RUNNING while in flight; once it ends it is gone from `recommendationModel.training`,
and the model it made names it (`recommendationModel.trainedBy`)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from domain.jobs.training_job import ModelStatus, Training
from schema.common import UserError, to_global_id


@strawberry.enum
class RecommendationTrainingState(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"


@strawberry.type(description="A recommendation training queued or running now (one per tenant at a time).")
class RecommendationTraining:
    id: strawberry.ID
    state: RecommendationTrainingState
    run_after: datetime = strawberry.field(
        description="A QUEUED training starts no sooner than this (the automatic trigger keeps trainings apart)."
    )

    @classmethod
    def from_domain(cls, training: Training) -> RecommendationTraining:
        return cls(
            id=to_global_id("RecommendationTraining", training.id),
            state=RecommendationTrainingState.RUNNING if training.running else RecommendationTrainingState.QUEUED,
            run_after=training.run_after,
        )


@strawberry.type(description="This tenant's trained recommendation model: the version served, and what is next.")
class RecommendationModel:
    version: int | None = strawberry.field(description="The version served; null until the first training.")
    algorithm: str | None
    trained_at: datetime | None
    events: int = strawberry.field(description="Feedback events the served version learned from.")
    users: int
    items: int
    training_ms: float | None
    trained_by: strawberry.ID | None = strawberry.field(
        description="The training that made it (a RecommendationTraining id); null if trained by `ragql train-recs`."
    )
    events_since: int = strawberry.field(
        description="Document feedback events since it was trained (counted up to eventsNeeded)."
    )
    events_needed: int | None = strawberry.field(
        description="New events at which a training is queued automatically; null when that is turned off."
    )
    training: RecommendationTraining | None = strawberry.field(description="The training queued or running now.")

    @classmethod
    def from_domain(cls, status: ModelStatus) -> RecommendationModel:
        m = status.model
        return cls(
            version=m.version if m else None,
            algorithm=m.algorithm if m else None,
            trained_at=m.trained_at if m else None,
            events=m.events if m else 0,
            users=m.users if m else 0,
            items=m.items if m else 0,
            training_ms=m.took_ms if m else None,
            trained_by=to_global_id("RecommendationTraining", m.job_id) if m and m.job_id else None,
            events_since=status.new_events,
            events_needed=status.needed,
            training=RecommendationTraining.from_domain(status.training) if status.training else None,
        )


@strawberry.type
class TrainRecommendationsPayload:
    training: RecommendationTraining | None = strawberry.field(
        default=None, description="The training now queued or running; null if it already ended."
    )
    queued: bool = strawberry.field(
        default=False, description="false: a training was already queued or running, and it is the one returned."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)
