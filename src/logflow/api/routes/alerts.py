"""``/api/v1/alerts``: alert rules (CRUD and dry-run test) and triggered alerts (list, ack, resolve).

Who may do what (the seed's table): reading rules and alerts follows ``LOGFLOW_PUBLIC_READ``;
creating a rule, testing it, acknowledging and resolving need a signed-in user; changing or
deleting a rule needs its owner or an admin. Webhook secrets are never shown, and a webhook or
Slack URL's path (often a credential) only to the owner and admins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from logflow.alerting.evaluator import preview
from logflow.alerting.lifecycle import TransitionError
from logflow.alerting.repository import AlertRepository, NotFound, alert_json, rule_json
from logflow.alerting.rules import RuleInvalid, RuleSpec, RuleUpdate, keep_redacted, validate_rule
from logflow.alerting.ssrf import Unresolvable, UnsafeURL, check_url, parse_allowlist
from logflow.api.deps import RuntimeDep
from logflow.api.params import parse_time
from logflow.api.routes._json import json_response
from logflow.auth.deps import CurrentUser, Principal, ReadAccess, audit
from logflow.db.models import AlertRule, utcnow
from logflow.db.session import make_session_factory
from logflow.runtime import Runtime

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not authenticated"},
    404: {"description": "no such rule or alert"},
    422: {"description": "invalid input; `detail` names the field"},
}


class AlertAction(BaseModel):
    """Optional body of acknowledge and resolve."""

    model_config = ConfigDict(extra="forbid")
    notes: str | None = Field(None, max_length=4000)


def _repo(runtime: Runtime) -> AlertRepository:
    return AlertRepository(make_session_factory(runtime.database))


def _invalid(exc: RuleInvalid) -> Response:
    return json_response({"detail": exc.detail, "errors": exc.errors}, 422)


def _may_edit(principal: Principal, rule: AlertRule) -> bool:
    return principal.is_admin or (rule.owner_id is not None and rule.owner_id == principal.user_id)


def _require_editor(principal: Principal, rule: AlertRule) -> None:
    if not _may_edit(principal, rule):
        raise HTTPException(403, "only the rule's owner or an admin may change it")


def _check_target(spec: RuleSpec, runtime: Runtime) -> None:
    """SSRF check at save time (it is repeated at every send and redirect)."""
    if spec.notification_channel not in ("webhook", "slack"):
        return
    try:
        allow = parse_allowlist(runtime.settings.webhook_allowed_hosts)
        check_url(str(spec.notification_config["url"]), allow)
    except Unresolvable:
        pass  # not resolvable now (no DNS here?): nothing to judge yet, every send checks again
    except UnsafeURL as exc:
        raise RuleInvalid.one(("notification_config", "url"), str(exc)) from None


def _not_found(exc: NotFound) -> HTTPException:
    return HTTPException(404, str(exc))


@router.post("/rules", status_code=201, responses={**ERRORS, 201: {"description": "the rule"}})
async def create_rule(body: RuleSpec, principal: CurrentUser, runtime: RuntimeDep) -> Response:
    """Create a rule owned by the caller."""
    def run() -> dict[str, Any]:
        spec = validate_rule(body.model_dump())
        _check_target(spec, runtime)
        return rule_json(_repo(runtime).create_rule(spec, principal.user_id), full=True)

    try:
        return json_response(await run_in_threadpool(run), 201)
    except RuleInvalid as exc:
        return _invalid(exc)


@router.get("/rules", responses=ERRORS)
async def list_rules(
    principal: ReadAccess, runtime: RuntimeDep,
    is_active: bool | None = None, owner_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Rules, oldest first: ``{"rules": [...], "total", "limit", "offset"}``."""
    rows, total = await run_in_threadpool(
        _repo(runtime).list_rules, active=is_active, owner_id=owner_id, limit=limit, offset=offset)
    return json_response({"rules": [rule_json(r, full=_may_edit(principal, r)) for r in rows],
                          "total": total, "limit": limit, "offset": offset})


@router.get("/rules/{rule_id}", responses=ERRORS)
async def get_rule(rule_id: RuleId, principal: ReadAccess, runtime: RuntimeDep) -> Response:
    try:
        rule = await run_in_threadpool(_repo(runtime).get_rule, rule_id)
    except NotFound as exc:
        raise _not_found(exc) from None
    return json_response(rule_json(rule, full=_may_edit(principal, rule)))


@router.put("/rules/{rule_id}", responses={**ERRORS, 403: {"description": "not the owner or an admin"}})
async def update_rule(rule_id: RuleId, body: RuleUpdate, principal: CurrentUser,
                      runtime: RuntimeDep) -> Response:
    """Change any of the rule's fields; the result is validated as a whole (and SSRF-checked)."""
    repo = _repo(runtime)

    def run() -> dict[str, Any]:
        rule = repo.get_rule(rule_id)
        _require_editor(principal, rule)
        current = {name: getattr(rule, name) for name in RuleSpec.model_fields}
        changes = body.model_dump(exclude_unset=True)
        if "notification_config" in changes and changes["notification_config"] is not None:
            changes["notification_config"] = keep_redacted(changes["notification_config"],
                                                           rule.notification_config)
        spec = validate_rule({**current, **changes})
        _check_target(spec, runtime)
        return rule_json(repo.replace_rule(rule_id, spec), full=True)

    try:
        return json_response(await run_in_threadpool(run))
    except NotFound as exc:
        raise _not_found(exc) from None
    except RuleInvalid as exc:
        return _invalid(exc)


@router.delete("/rules/{rule_id}", status_code=204,
               responses={**ERRORS, 403: {"description": "not the owner or an admin"}})
async def delete_rule(rule_id: RuleId, principal: CurrentUser, request: Request,
                      runtime: RuntimeDep) -> Response:
    """Delete the rule with its alerts and their delivery history (audited)."""
    repo = _repo(runtime)

    def run() -> None:
        rule = repo.get_rule(rule_id)
        _require_editor(principal, rule)
        repo.delete_rule(rule_id)
        audit(runtime, principal, "rule_deleted", f"alert_rule:{rule_id}", request,
              {"name": rule.name, "owner_id": rule.owner_id, "channel": rule.notification_channel})

    try:
        await run_in_threadpool(run)
    except NotFound as exc:
        raise _not_found(exc) from None
    return Response(status_code=204)


@router.post("/rules/test", responses=ERRORS)
async def test_rule_body(body: RuleSpec, _: CurrentUser, runtime: RuntimeDep) -> Response:
    """Dry-run an unsaved rule: the value now, whether it would fire, sample logs. Notifies nobody."""
    try:
        spec = validate_rule(body.model_dump())
    except RuleInvalid as exc:
        return _invalid(exc)
    result = await run_in_threadpool(preview, runtime.store, spec, utcnow(),
                                     base_url=runtime.settings.alert_base_url)
    return json_response({"rule_id": None, **result})


@router.post("/rules/{rule_id}/test", responses=ERRORS)
async def test_rule(rule_id: RuleId, _: CurrentUser, runtime: RuntimeDep) -> Response:
    """Evaluate the saved rule now without notifying: value, would_fire, sample logs, search link."""
    try:
        rule = await run_in_threadpool(_repo(runtime).get_rule, rule_id)
    except NotFound as exc:
        raise _not_found(exc) from None
    result = await run_in_threadpool(preview, runtime.store, rule, utcnow(),
                                     base_url=runtime.settings.alert_base_url)
    return json_response({"rule_id": rule_id, **result})


def _moment(value: str | None, name: str) -> datetime | None:
    us = parse_time(value, name=name)
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


@router.get("/triggered", responses=ERRORS)
async def list_triggered(
    _: ReadAccess, runtime: RuntimeDep,
    status: Literal["active", "acknowledged", "resolved", "open"] | None = None,
    rule_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    group: Annotated[str | None, Query(max_length=255)] = None,
    start_time: Annotated[str | None, Query(description="triggered at or after (ISO 8601 or epoch)")] = None,
    end_time: Annotated[str | None, Query(description="triggered before (ISO 8601 or epoch)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Triggered alerts, newest first; ``status=open`` means active or acknowledged."""
    start, end = _moment(start_time, "start_time"), _moment(end_time, "end_time")
    rows, total = await run_in_threadpool(
        _repo(runtime).list_alerts, status=status, rule_id=rule_id, group=group, start=start, end=end,
        limit=limit, offset=offset)
    return json_response({"alerts": [alert_json(a) for a in rows], "total": total, "limit": limit,
                          "offset": offset})


@router.get("/triggered/{alert_id}", responses=ERRORS)
async def get_triggered(alert_id: AlertId, _: ReadAccess, runtime: RuntimeDep) -> Response:
    """One alert with every delivery attempt (``deliveries``) and each owed notification's state."""
    try:
        return json_response(await run_in_threadpool(_repo(runtime).alert_detail, alert_id))
    except NotFound as exc:
        raise _not_found(exc) from None


async def _act(action: str, alert_id: int, body: AlertAction | None, principal: Principal,
               runtime: Runtime) -> Response:
    repo = _repo(runtime)
    notes = body.notes if body is not None else None
    method = repo.acknowledge if action == "acknowledge" else repo.resolve
    try:
        alert = await run_in_threadpool(method, alert_id, principal.user_id, notes)
    except NotFound as exc:
        raise _not_found(exc) from None
    except TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    return json_response(alert_json(alert))


@router.post("/triggered/{alert_id}/acknowledge", responses={**ERRORS, 409: {"description": "not active"}})
async def acknowledge(alert_id: AlertId, principal: CurrentUser, runtime: RuntimeDep,
                      body: AlertAction | None = None) -> Response:
    """``active`` → ``acknowledged``: stops reminders; the alert still resolves by itself."""
    return await _act("acknowledge", alert_id, body, principal, runtime)


@router.post("/triggered/{alert_id}/resolve", responses={**ERRORS, 409: {"description": "already resolved"}})
async def resolve(alert_id: AlertId, principal: CurrentUser, runtime: RuntimeDep,
                  body: AlertAction | None = None) -> Response:
    """Close the alert by hand; the rule's channel is told (``resolved`` notification)."""
    return await _act("resolve", alert_id, body, principal, runtime)
