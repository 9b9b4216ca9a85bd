"""Elasticsearch ``_bulk`` wire format: NDJSON action/source pairs in, ES bulk response out.

Parsing never fails the whole body for one bad pair: a garbled action line, a missing or invalid
source line, or an action LogFlow does not support (``delete``, ``update``) becomes one item with
an ES-shaped error, and the valid siblings go through the one ingest pipeline. ECS fields are
mapped to LogFlow's event model here (see docs/protocols/elasticsearch.md); everything else of a
source document is kept as attributes exactly as sent.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from logflow.domain.events import EVENT_ID_PATTERN
from logflow.ingest.decode import BodyError, DecodedItem, loads_json
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError
from logflow.ingest.pipeline import IngestOutcome
from logflow.settings import Settings

# The Elasticsearch release whose API shape we answer with. Beats before 8.11 refuse an
# Elasticsearch older than themselves, so this is a recent 8.x; the major (8) is what Vector and
# the official clients branch on (no mapping types).
ES_VERSION = "8.17.0"
LUCENE_VERSION = "9.12.0"
PRODUCT_HEADERS = {"X-Elastic-Product": "Elasticsearch"}
CLUSTER_NAME = "logflow"
NODE_NAME = "LogFlow"
DEFAULT_INDEX = "logflow"
INDEX_ATTRIBUTE = "_index"
# ES sends one challenge per scheme it accepts on a 401; shippers then retry with Basic or ApiKey.
CHALLENGES = ('Basic realm="logflow" charset="UTF-8"', "ApiKey", "Bearer")

SUPPORTED_ACTIONS = ("index", "create")
ACTIONS = frozenset({"index", "create", "delete", "update"})
# Keys an action's metadata may carry (ES 7/8 and older shippers). Used to tell a source line that
# is missing (the next line is already an action) from a document that merely has such a key.
_META_KEYS = frozenset({
    "_index", "_id", "_type", "routing", "_routing", "pipeline", "require_alias", "require_data_stream",
    "if_seq_no", "if_primary_term", "version", "_version", "version_type", "_version_type",
    "retry_on_conflict", "_retry_on_conflict", "_source", "dynamic_templates", "op_type", "parent", "_parent",
    "list_executed_pipelines",
})
_ID_PATTERN = re.compile(EVENT_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class EsError:
    """A per-item or whole-request error in Elasticsearch's terms."""

    status: int
    type: str
    reason: str


@dataclass(slots=True)
class BulkItem:
    """One action of a bulk body: either an item for the pipeline (``decoded``) or an ES error."""

    action: str
    index: str
    es_id: str | None
    decoded: DecodedItem | None = None
    error: EsError | None = None


# -- whole-request answers ----------------------------------------------------------------------
def error_body(status: int, type_: str, reason: str) -> dict[str, Any]:
    """Elasticsearch's error document: ``{"error": {"root_cause": [...], "type", "reason"}, "status"}``."""
    cause = {"type": type_, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def body_error_type(code: int) -> str:
    """The ES exception type for a whole-body problem with LogFlow's HTTP ``code``."""
    return {413: "content_too_long_exception", 415: "illegal_argument_exception"}.get(code, "parse_exception")


def deployment_uuid(settings: Settings) -> str:
    """A stable ``cluster_uuid`` (ES's base64url form) derived from where this deployment keeps its data."""
    where = settings.store_url if settings.store_url != "embedded://" else str(settings.data_dir.resolve())
    raw = uuid.uuid5(uuid.NAMESPACE_URL, f"logflow:{where}|{settings.store_index_prefix}").bytes
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def info_body(cluster_id: str) -> dict[str, Any]:
    """The ``GET /`` document shippers check (``version.number``, ``tagline``)."""
    return {
        "name": NODE_NAME,
        "cluster_name": CLUSTER_NAME,
        "cluster_uuid": cluster_id,
        "version": {
            "number": ES_VERSION,
            "build_flavor": "default",
            "build_type": "tar",
            "build_hash": "logflow",
            "build_date": "2024-12-11T12:08:05.663969764Z",
            "build_snapshot": False,
            "lucene_version": LUCENE_VERSION,
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }


def license_body(cluster_id: str) -> dict[str, Any]:
    """``GET /_license``: Beats refuse to ship without an active license of a default distribution."""
    return {
        "license": {
            "status": "active",
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"logflow-license:{cluster_id}")),
            "type": "basic",
            "issue_date": "1970-01-01T00:00:00.000Z",
            "issue_date_in_millis": 0,
            "max_nodes": 1000,
            "max_resource_units": None,
            "issued_to": CLUSTER_NAME,
            "issuer": "LogFlow (Elasticsearch compatibility answer)",
            "start_date_in_millis": -1,
        }
    }


def xpack_body(cluster_id: str) -> dict[str, Any]:
    """``GET /_xpack`` (Beats 7.x read the license here; ILM reported available so setup proceeds)."""
    lic = license_body(cluster_id)["license"]
    return {
        "build": {"hash": "logflow", "date": "2024-12-11T12:08:05.663969764Z"},
        "license": {"uid": lic["uid"], "type": "basic", "mode": "basic", "status": "active"},
        "features": {"ilm": {"available": True, "enabled": True}},
    }


# -- bulk body ------------------------------------------------------------------------------------
def _action_of(value: object, *, strict: bool) -> tuple[str, dict[str, Any]] | None:
    """``(action, metadata)`` when ``value`` is an action line; ``strict`` also requires known meta keys."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    name, meta = next(iter(value.items()))
    if name not in ACTIONS or not isinstance(meta, dict):
        return None
    if strict and not meta.keys() <= _META_KEYS:
        return None
    return name, meta


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    return str(value)


def parse_bulk(data: bytes, default_index: str | None, limits: IngestLimits) -> list[BulkItem]:
    """Split a (decompressed) bulk body into actions. Raises BodyError only when nothing is usable."""
    lines = [(no, line) for no, raw in enumerate(data.split(b"\n"), start=1) if (line := raw.strip())]
    if not lines:
        raise BodyError(400, "request body is required")
    items: list[BulkItem] = []
    i = 0
    while i < len(lines):
        no, raw = lines[i]
        i += 1
        if len(items) >= limits.max_batch_events:
            raise BodyError(413, f"bulk request has more than {limits.max_batch_events} actions")
        try:
            parsed = _action_of(loads_json(raw)[0], strict=False)
        except orjson.JSONDecodeError:
            parsed = None
        if parsed is None:
            items.append(BulkItem("index", default_index or DEFAULT_INDEX, None, error=EsError(
                400, "illegal_argument_exception",
                f"Malformed action/metadata line [{no}], expected one of [create, delete, index, update]")))
            # Resynchronise on the next line that is unmistakably an action: the lines in between
            # belonged to the garbled pair, and the pairs after it are still good.
            while i < len(lines) and not _is_strict_action(lines[i][1]):
                i += 1
            continue
        action, meta = parsed
        index = _text(meta.get("_index")) or default_index or DEFAULT_INDEX
        item = BulkItem(action, index, _text(meta.get("_id")))
        items.append(item)
        if action == "delete":  # a delete has no source line
            item.error = EsError(400, "illegal_argument_exception",
                                 "LogFlow stores logs append-only: the 'delete' action is not supported")
            continue
        if i >= len(lines) or _is_strict_action(lines[i][1]):
            item.error = EsError(400, "illegal_argument_exception",
                                 f"the {action} action on line {no} has no source line after it")
            continue
        src_no, src = lines[i]
        i += 1
        if action == "update":
            item.error = EsError(400, "illegal_argument_exception",
                                 "LogFlow stores logs append-only: the 'update' action is not supported")
            continue
        item.decoded = _source_item(src, src_no, item, limits)
    return items


def _is_strict_action(raw: bytes) -> bool:
    try:
        return _action_of(loads_json(raw)[0], strict=True) is not None
    except orjson.JSONDecodeError:
        return False


def _source_item(raw: bytes, line: int, item: BulkItem, limits: IngestLimits) -> DecodedItem:
    decoded = DecodedItem(index=0, line=line)  # index is set when the batch is submitted
    if len(raw) > limits.max_event_bytes:
        decoded.error = ItemError(413, f"document on line {line} is larger than {limits.max_event_bytes} bytes")
        return decoded
    try:
        source, decoded.flags = loads_json(raw)
    except orjson.JSONDecodeError as exc:
        decoded.error = ItemError(400, f"failed to parse the document on line {line}: {exc}")
        return decoded
    decoded.value = to_logflow(source, item.index, item.es_id)
    return decoded


# -- ECS -> LogFlow -------------------------------------------------------------------------------
def _pop(doc: dict[str, Any], dotted: str) -> Any:
    """Take ``a.b`` from ``doc``: the dotted key itself, else ``doc["a"]["b"]`` (pruning an emptied parent)."""
    if dotted in doc:
        return doc.pop(dotted)
    parent, _, child = dotted.partition(".")
    nested = doc.get(parent)
    if child and isinstance(nested, dict) and child in nested:
        rest = dict(nested)  # leave the caller's object alone
        value = rest.pop(child)
        if rest:
            doc[parent] = rest
        else:
            del doc[parent]
        return value
    return None


def _take(doc: dict[str, Any], *keys: str, strings_only: bool = False) -> Any:
    """The first of ``keys`` present (dotted or nested); later alternatives stay in the document."""
    for key in keys:
        if "." not in key:
            value = doc.get(key)
            if value is None or (strings_only and not isinstance(value, str)):
                continue
            return doc.pop(key)
        value = _pop(doc, key)
        if value is not None:
            return value
    return None


def _first(value: Any, fallback: Callable[[], Any]) -> Any:
    """``value`` unless it is missing; only then is ``fallback`` taken out of the document."""
    return value if value is not None else fallback()


def event_id_for(es_id: str) -> str:
    """LogFlow's event id for an ES ``_id``: itself when it fits LogFlow's id alphabet, else a stable hash.

    Either way a shipper's retry of the same ``_id`` maps to the same event, which the store keeps once.
    """
    if _ID_PATTERN.fullmatch(es_id):
        return es_id
    return "es-" + hashlib.blake2b(es_id.encode("utf-8"), digest_size=16).hexdigest()


def to_logflow(source: object, index: str, es_id: str | None) -> object:
    """Map one ES source document (ECS names) to LogFlow's item form; non-objects pass through to be refused."""
    if not isinstance(source, dict):
        return source
    doc = dict(source)
    item: dict[str, Any] = {}
    fields = {
        "timestamp": _take(doc, "@timestamp", "timestamp"),
        "message": _first(_take(doc, "message", "msg"), lambda: _take(doc, "log", strings_only=True)),
        "level": _take(doc, "log.level", "level", "severity"),
        "service": _first(_take(doc, "service.name"), lambda: _take(doc, "service", strings_only=True)),
        "host": _first(_take(doc, "host.name", "host.hostname"), lambda: _take(doc, "host", strings_only=True)),
        "trace_id": _take(doc, "trace.id", "trace_id"),
        "span_id": _take(doc, "span.id", "span_id"),
        "request_id": _take(doc, "http.request.id", "request_id"),
        "correlation_id": _take(doc, "correlation_id"),
    }
    item.update((k, v) for k, v in fields.items() if v is not None)
    if es_id is not None:
        item["id"] = event_id_for(es_id)
    # Every other field goes through ``metadata`` so that keys like ``id`` or ``host`` (an ECS object
    # minus its mapped ``name``) are kept as attributes under their own names, never read as model fields.
    doc[INDEX_ATTRIBUTE] = index
    item["metadata"] = doc
    return item


# -- bulk response --------------------------------------------------------------------------------
_ITEM_ERROR_TYPES = {400: "document_parsing_exception", 413: "illegal_argument_exception",
                     422: "document_parsing_exception"}


def submitted(items: list[BulkItem]) -> list[DecodedItem]:
    """The pipeline's batch: every index/create item with a source, numbered in order."""
    batch: list[DecodedItem] = []
    for item in items:
        if item.decoded is not None:
            item.decoded.index = len(batch)
            batch.append(item.decoded)
    return batch


def bulk_response(items: list[BulkItem], outcome: IngestOutcome | None, took_ms: int) -> dict[str, Any]:
    """ES's bulk answer: ``took``, ``errors`` and one entry per action, in order."""
    out: list[dict[str, Any]] = []
    errors = False
    results = outcome.results if outcome is not None else []
    for item in items:
        entry: dict[str, Any] = {"_index": item.index, "_id": item.es_id}
        error = item.error
        if error is None and item.decoded is not None and outcome is not None:
            result = results[item.decoded.index]
            if result.status == "accepted":
                entry["_id"] = item.es_id if item.es_id is not None else result.id
                entry.update({"_version": 1, "result": "created",
                              "_shards": {"total": 1, "successful": 1, "failed": 0}, "status": 201})
                out.append({item.action: entry})
                continue
            code = result.code or 400
            error = EsError(400, _ITEM_ERROR_TYPES.get(code, "illegal_argument_exception"), result.error or "")
        assert error is not None
        errors = True
        entry["status"] = error.status
        entry["error"] = {"type": error.type, "reason": error.reason, "index": item.index}
        out.append({item.action: entry})
    return {"took": took_ms, "errors": errors, "items": out}
