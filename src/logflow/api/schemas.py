"""Request and response models: they document the API in /docs and validate request bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class LogOut(BaseModel):
    id: str
    timestamp: str = Field(description="ISO 8601 UTC with Z")
    level: str
    service: str
    host: str | None
    message: str
    trace_id: str | None
    span_id: str | None
    request_id: str | None
    correlation_id: str | None
    metadata: dict[str, Any] = Field(description="every field outside the fixed model (attributes)")
    flags: list[str] | None = Field(None, description="repairs made at ingest, e.g. invalid_utf8")


class SearchResponse(BaseModel):
    total: int
    total_relation: Literal["eq", "gte"] = Field(description="'gte' when counting stopped at 10,000 matches")
    logs: list[LogOut]
    limit: int
    offset: int
    query_time_ms: float


class SearchBody(BaseModel):
    """Body of ``POST /api/v1/logs/search``."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, max_length=4096, description='words (all must match) and "quoted phrases"')
    services: list[str] = Field(default_factory=list, max_length=100)
    levels: list[str] = Field(default_factory=list, max_length=10)
    hosts: list[str] = Field(default_factory=list, max_length=100)
    fields: dict[str, str] = Field(default_factory=dict, description="exact matches on metadata attributes")
    start_time: str | None = None
    end_time: str | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000)
    sort: Literal["desc", "asc", "newest", "oldest"] = "desc"


class ItemResultOut(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    id: str | None = None
    code: int | None = None
    error: str | None = None
    line: int | None = Field(None, description="1-based line number for NDJSON bodies")


class IngestResponse(BaseModel):
    accepted: int
    rejected: int
    results: list[ItemResultOut]


class ErrorResponse(BaseModel):
    detail: str
