"""recommendationModel and trainRecommendations: one call into domain.jobs.training_job each."""

from __future__ import annotations

import strawberry

from domain.jobs import training_job
from schema.context import Context
from schema.training import RecommendationModel, RecommendationTraining, TrainRecommendationsPayload


async def recommendation_model(info: strawberry.Info[Context]) -> RecommendationModel:
    s = info.context.services
    return RecommendationModel.from_domain(await training_job.status(s.db, info.context.tenant_id, s.autotrain))


async def train_recommendations(info: strawberry.Info[Context]) -> TrainRecommendationsPayload:
    training, queued = await training_job.request(info.context.services.db, info.context.tenant_id)
    return TrainRecommendationsPayload(
        training=RecommendationTraining.from_domain(training) if training else None, queued=queued
    )
