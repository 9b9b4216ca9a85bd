"""Elasticsearch ``_bulk`` and the shipper probes, on both shapes, read back through search.

Bodies are built the way Filebeat, Fluent Bit, Vector and rsyslog build them (NDJSON action and
source lines, ECS field names, Basic auth with the API key as password); messages are real Loghub
lines. Every answer is checked against Elasticsearch's documented shapes.
"""

from __future__ import annotations

import base64
import gzip
import time
from collections.abc import Callable
from typing import Any

import orjson

from logflow.ingest.protocols.elasticsearch import event_id_for
from logflow.settings import Settings
from tests.conftest import LogFlow, loghub_rows, start_logflow, stop_logflow

ES_HEADER = ("x-elastic-product", "Elasticsearch")


def basic(key: str, user: str = "elastic") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def ndjson(*docs: Any) -> bytes:
    return b"".join((d if isinstance(d, bytes) else orjson.dumps(d)) + b"\n" for d in docs)


def iso(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset_s)) + ".250Z"


def bulk(flow: LogFlow, body: bytes, path: str = "/_bulk", **headers: str) -> Any:
    resp = flow.client.post(path, content=body, headers={**basic(flow.ingest_key),
                                                         "Content-Type": "application/x-ndjson", **headers})
    assert resp.headers.get(ES_HEADER[0]) == ES_HEADER[1]
    return resp


def search(flow: LogFlow, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = flow.client.get("/api/v1/logs/search", params={"limit": 1000, **params}).json()
    return result


def assert_es_error(resp: Any, status: int, type_: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers.get(ES_HEADER[0]) == ES_HEADER[1]
    body = resp.json()
    assert body["status"] == status
    assert body["error"]["type"] == type_ and body["error"]["reason"]
    assert body["error"]["root_cause"] == [{"type": type_, "reason": body["error"]["reason"]}]


def test_mixed_batch_stores_valid_siblings_and_answers_per_item(logflow: LogFlow) -> None:
    lines = [r["Content"] for r in loghub_rows("OpenSSH")[:4]]
    body = ndjson(
        {"index": {"_index": "ssh"}}, {"@timestamp": iso(-60), "message": lines[0], "service.name": "mixed"},
        {"create": {"_index": "ssh"}}, b'{"message": "truncated',  # garbled source line
        {"index": {}}, {"@timestamp": iso(-59), "log.level": "loud", "message": "bad level"},
        {"delete": {"_index": "ssh", "_id": "gone"}},  # no source line follows a delete
        {"update": {"_id": "u1"}}, {"doc": {"message": "changed"}},
        b"this is not an action",  # garbled action line: its source is skipped, siblings survive
        {"message": "source of the garbled action"},
        {"index": {"_index": "ssh"}},  # action without its source: the next line is an action
        {"index": {"_index": "ssh"}}, {"@timestamp": iso(-58), "message": lines[1], "service.name": "mixed"},
        {"create": {}}, {"@timestamp": iso(-57), "level": "error"},  # no message
        {"create": {"_index": "ssh", "_id": "mixed-3"}},
        {"@timestamp": iso(-56), "message": lines[2], "service.name": "mixed"},
        {"index": {}}, {"@timestamp": iso(3 * 86400), "message": "from the future"},
        {"index": {}}, [1, 2, 3],
    )
    resp = bulk(logflow, body, "/fallback/_bulk")
    assert resp.status_code == 200, resp.text  # as Elasticsearch: item failures do not fail the request
    answer = resp.json()
    assert answer["errors"] is True and isinstance(answer["took"], int)
    items = answer["items"]
    expect = [("index", 201), ("create", 400), ("index", 400), ("delete", 400), ("update", 400), ("index", 400),
              ("index", 400), ("index", 201), ("create", 400), ("create", 201), ("index", 400), ("index", 400)]
    assert [(next(iter(i)), next(iter(i.values()))["status"]) for i in items] == expect
    flat = [next(iter(i.values())) for i in items]
    assert flat[0]["_index"] == "ssh" and flat[0]["result"] == "created" and flat[0]["_version"] == 1
    assert flat[2]["_index"] == "fallback"  # the path's index is the default
    assert flat[1]["error"]["type"] == "document_parsing_exception"
    assert "unknown level" in flat[2]["error"]["reason"]
    assert flat[3]["_id"] == "gone" and "delete" in flat[3]["error"]["reason"]
    assert "update" in flat[4]["error"]["reason"]
    assert "Malformed action/metadata line [10]" in flat[5]["error"]["reason"]
    assert "no source line" in flat[6]["error"]["reason"]
    assert "missing 'message'" in flat[8]["error"]["reason"]
    assert flat[9]["_id"] == "mixed-3"
    assert "future" in flat[10]["error"]["reason"]
    assert "JSON object" in flat[11]["error"]["reason"]
    for failed in (f for f in flat if f["status"] == 400):
        assert set(failed) == {"_index", "_id", "status", "error"}
        assert failed["error"]["type"] in ("document_parsing_exception", "illegal_argument_exception")

    logflow.settle()
    found = search(logflow, service="mixed", sort="asc")
    assert found["total"] == 3
    assert [log["message"] for log in found["logs"]] == lines[:3]
    assert [log["id"] for log in found["logs"]][1:] == [flat[7]["_id"], "mixed-3"]
    assert search(logflow, query='"source of the garbled action"')["total"] == 0
    assert search(logflow, query="changed")["total"] == 0


def test_index_and_create_and_type_is_ignored(logflow: LogFlow) -> None:
    body = ndjson(
        {"index": {"_index": "web", "_type": "_doc", "_id": "t-index"}},
        {"@timestamp": iso(-30), "message": "via index", "service": "types"},
        {"create": {"_index": "web", "_type": "events", "_id": "t-create"}},
        {"@timestamp": iso(-29), "message": "via create", "service": "types"},
        {"index": {"_type": "doc"}},  # no _index at all, no _id: LogFlow assigns the id
        {"@timestamp": iso(-28), "message": "no index named", "service": "types"},
    )
    resp = bulk(logflow, body)
    assert resp.status_code == 200 and resp.json()["errors"] is False
    items = resp.json()["items"]
    assert [next(iter(i)) for i in items] == ["index", "create", "index"]
    assert [i[next(iter(i))]["status"] for i in items] == [201, 201, 201]
    assigned = items[2]["index"]["_id"]
    assert items[2]["index"]["_index"] == "logflow"
    logflow.settle()
    docs = {log["id"]: log for log in search(logflow, service="types")["logs"]}
    assert set(docs) == {"t-index", "t-create", assigned}
    assert docs["t-index"]["metadata"] == {"_index": "web"}  # _type is not stored anywhere
    assert docs["t-create"]["message"] == "via create"
    assert docs[assigned]["metadata"] == {"_index": "logflow"}


def test_id_makes_a_resent_bulk_idempotent(logflow: LogFlow) -> None:
    rows = loghub_rows("HDFS")[:150]
    pairs: list[Any] = []
    for i, row in enumerate(rows):
        pairs.append({"create": {"_index": "hdfs", "_id": f"hdfs-{row['LineId']}"}})
        pairs.append({"@timestamp": iso(-600 + i), "message": row["Content"], "log.level": row["Level"],
                      "service.name": "hdfs-bulk"})
    odd_id = "not/a LogFlow id?"  # ES allows any _id; LogFlow maps it to a stable id of its own alphabet
    pairs += [{"index": {"_id": odd_id}}, {"@timestamp": iso(-10), "message": "odd id", "service.name": "hdfs-bulk"}]
    body = ndjson(*pairs)
    for _ in range(2):  # a shipper resending the same batch after a timeout
        resp = bulk(logflow, body)
        assert resp.status_code == 200 and resp.json()["errors"] is False
        assert [next(iter(i.values()))["_id"] for i in resp.json()["items"]][-2:] == [f"hdfs-{rows[-1]['LineId']}",
                                                                                      odd_id]
    logflow.settle()
    found = search(logflow, service="hdfs-bulk")
    assert found["total"] == len(rows) + 1
    assert len({log["id"] for log in found["logs"]}) == len(rows) + 1
    one = logflow.client.get(f"/api/v1/logs/hdfs-{rows[0]['LineId']}").json()
    assert one["message"] == rows[0]["Content"] and one["level"] == rows[0]["Level"]
    odd = logflow.client.get(f"/api/v1/logs/{event_id_for(odd_id)}")
    assert odd.status_code == 200 and odd.json()["message"] == "odd id"


def test_ecs_fields_dotted_and_nested(logflow: LogFlow) -> None:
    stamp = iso(-120)
    body = ndjson(
        {"index": {"_index": "ecs"}},
        {"@timestamp": stamp, "message": "dotted", "log.level": "warning", "service.name": "ecs-svc",
         "host.name": "web-1", "trace.id": "4bf92f3577b34da6a3ce929d0e0e4736", "span.id": "00f067aa0ba902b7",
         "http.request.id": "req-9", "user.name": "alice"},
        {"index": {"_index": "ecs"}},
        {"@timestamp": stamp, "message": "nested", "log": {"level": "ERROR", "logger": "app.db"},
         "service": {"name": "ecs-svc", "version": "2.1"}, "host": {"name": "web-2", "os": {"family": "debian"}},
         "trace": {"id": "t-nested"}, "span": {"id": "s-nested"}, "id": 42, "timestamp": "kept as attribute"},
        {"index": {"_index": "ecs"}},
        {"@timestamp": stamp, "message": "hostname only", "level": "debug", "service": "ecs-svc",
         "host": {"hostname": "db-7", "ip": ["10.0.0.7"]}},
        {"index": {"_index": "ecs"}},
        {"@timestamp": stamp, "log": "fluent-bit style line", "service.name": "ecs-svc", "host": "plain-host",
         "severity": "crit"},
    )
    resp = bulk(logflow, body)
    assert resp.json()["errors"] is False, resp.text
    ids = [i["index"]["_id"] for i in resp.json()["items"]]
    logflow.settle()
    got = [logflow.client.get(f"/api/v1/logs/{i}").json() for i in ids]
    assert [g["service"] for g in got] == ["ecs-svc"] * 4
    assert [g["level"] for g in got] == ["WARN", "ERROR", "DEBUG", "CRITICAL"]
    assert [g["host"] for g in got] == ["web-1", "web-2", "db-7", "plain-host"]
    assert [g["message"] for g in got] == ["dotted", "nested", "hostname only", "fluent-bit style line"]
    assert all(g["timestamp"] == stamp.replace(".250Z", ".250000Z") for g in got)
    assert (got[0]["trace_id"], got[0]["span_id"], got[0]["request_id"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "req-9")
    assert (got[1]["trace_id"], got[1]["span_id"]) == ("t-nested", "s-nested")
    # Mapped keys are removed; everything else is kept exactly as sent (mapped leaves pruned).
    assert got[0]["metadata"] == {"user.name": "alice", "_index": "ecs"}
    assert got[1]["metadata"] == {"log": {"logger": "app.db"}, "service": {"version": "2.1"},
                                  "host": {"os": {"family": "debian"}}, "id": 42,
                                  "timestamp": "kept as attribute", "_index": "ecs"}
    assert got[2]["metadata"] == {"host": {"ip": ["10.0.0.7"]}, "_index": "ecs"}
    assert got[3]["metadata"] == {"_index": "ecs"}
    assert search(logflow, field="user.name:alice")["total"] == 1


def test_gzip_bodies(logflow: LogFlow) -> None:
    rows = loghub_rows("Apache")[:200]
    pairs: list[Any] = []
    for i, row in enumerate(rows):
        pairs += [{"index": {"_index": "apache"}},
                  {"@timestamp": iso(-400 + i), "message": row["Content"], "service.name": "gz"}]
    resp = bulk(logflow, gzip.compress(ndjson(*pairs)), **{"Content-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.json()["errors"] is False
    assert len(resp.json()["items"]) == len(rows)
    assert_es_error(bulk(logflow, b"not gzip at all", **{"Content-Encoding": "gzip"}), 400, "parse_exception")
    assert_es_error(bulk(logflow, b"{}", **{"Content-Encoding": "br"}), 415, "illegal_argument_exception")
    assert_es_error(bulk(logflow, b"\n\n"), 400, "parse_exception")
    logflow.settle()
    found = search(logflow, service="gz", sort="asc")
    assert found["total"] == len(rows)
    assert [log["message"] for log in found["logs"]] == [r["Content"] for r in rows]


def test_auth_answers_in_elasticsearch_shape(logflow: LogFlow) -> None:
    body = ndjson({"index": {}}, {"message": "auth check", "service.name": "auth-es"})
    anonymous = logflow.client.post("/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert_es_error(anonymous, 401, "security_exception")
    assert 'Basic realm="logflow" charset="UTF-8"' in anonymous.headers.get_list("www-authenticate")
    wrong = logflow.client.post("/_bulk", content=body, headers=basic("lf_not_a_real_key"))
    assert_es_error(wrong, 401, "security_exception")
    read_key = logflow.api_key("admin", ["read"])
    assert_es_error(logflow.client.post("/_bulk", content=body, headers=basic(read_key)), 403, "security_exception")
    assert_es_error(logflow.client.get("/", headers=basic("lf_not_a_real_key")), 401, "security_exception")
    assert_es_error(logflow.client.get("/_license", headers=basic("lf_not_a_real_key")), 401, "security_exception")
    assert_es_error(logflow.client.put("/_index_template/filebeat", json={}), 401, "security_exception")

    accepted = 0
    key = logflow.ingest_key
    for headers in (basic(key), basic(key, user=""), {"Authorization": f"ApiKey {key}"},
                    {"Authorization": "ApiKey " + base64.b64encode(f"my-id:{key}".encode()).decode()},
                    {"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        resp = logflow.client.post("/_bulk", content=body, headers=headers)
        assert resp.status_code == 200 and resp.json()["errors"] is False, (headers, resp.text)
        accepted += 1
    logflow.settle()
    assert search(logflow, service="auth-es")["total"] == accepted


def test_probes_shippers_make(logflow: LogFlow) -> None:
    client = logflow.client
    root = client.get("/", headers=basic(logflow.ingest_key))
    assert root.status_code == 200 and root.headers.get(ES_HEADER[0]) == ES_HEADER[1]
    info = root.json()
    assert info["tagline"] == "You Know, for Search" and info["name"] == "LogFlow"
    assert info["version"]["number"].startswith("8.") and info["version"]["build_flavor"] == "default"
    assert {"lucene_version", "minimum_wire_compatibility_version", "logflow"} <= set(info["version"])
    assert info["cluster_name"] and len(info["cluster_uuid"]) == 22
    assert info["health"] == "/health" and info["links"]["ingest"] == "/api/v1/ingest"
    assert client.get("/").json()["cluster_uuid"] == info["cluster_uuid"]  # stable, anonymous allowed
    head = client.head("/")
    assert head.status_code == 200 and head.headers.get(ES_HEADER[0]) == ES_HEADER[1]

    cat = client.get("/_cat/health")
    assert cat.status_code == 200 and cat.headers.get(ES_HEADER[0]) == ES_HEADER[1]
    assert cat.text.split()[2:4] == ["logflow", "green"]
    assert client.get("/_cat/health", params={"format": "json"}).json()[0]["status"] == "green"
    assert client.get("/_cat/health?v").text.startswith("epoch timestamp cluster status")
    health = client.get("/_cluster/health")
    assert health.status_code == 200 and health.json()["status"] == "green"
    assert client.head("/_cluster/health").status_code == 200
    lic = client.get("/_license").json()["license"]
    assert (lic["status"], lic["type"]) == ("active", "basic")
    xpack = client.get("/_xpack").json()
    assert xpack["license"]["status"] == "active" and xpack["license"]["mode"] == "basic"

    # Filebeat's setup: "does the template/policy exist?" -> no -> PUT (acknowledged, ignored).
    auth = basic(logflow.ingest_key)
    for path in ("/_index_template/filebeat-8.17.0", "/_template/filebeat", "/_ilm/policy/filebeat",
                 "/_data_stream/filebeat-8.17.0"):
        assert_es_error(client.get(path, headers=auth), 404, "resource_not_found_exception")
        assert client.head(path, headers=auth).status_code == 404
        put = client.put(path, json={"index_patterns": ["filebeat-*"]}, headers=auth)
        assert put.status_code == 200 and put.json() == {"acknowledged": True}
        assert put.headers.get(ES_HEADER[0]) == ES_HEADER[1]


def test_full_queue_is_429_with_retry_after(make_settings: Callable[..., Settings]) -> None:
    """A full queue refuses the whole bulk as ES does (es_rejected_execution_exception): shippers retry.

    Embedded shape only: it is the embedded queue's backlog bound that refuses (Kafka has no such bound).
    """
    flow = start_logflow(make_settings(queue_max_backlog_bytes=1024 * 1024), processors=0)
    try:
        filler = "x" * 4000
        body = ndjson(*[d for i in range(120) for d in ({"index": {}}, {"message": f"{filler} {i}"})])
        statuses = []
        for _ in range(6):  # ~0.5 MB per request against a 1 MiB backlog with no consumer
            statuses.append(bulk(flow, body).status_code)
            if statuses[-1] != 200:
                break
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        refused = bulk(flow, body)
        assert_es_error(refused, 429, "es_rejected_execution_exception")
        assert int(refused.headers["retry-after"]) >= 1
    finally:
        stop_logflow(flow)


def test_spent_rate_limit_is_an_es_429(make_settings: Callable[..., Settings]) -> None:
    """The per-key API rate limit refuses in ES's shape too, with Retry-After, so shippers back off."""
    flow = start_logflow(make_settings(rate_api_per_minute=3), processors=0)
    try:
        body = ndjson({"index": {}}, {"message": "rate limited"})
        statuses = [bulk(flow, body).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = bulk(flow, body)
        assert_es_error(refused, 429, "es_rejected_execution_exception")
        assert int(refused.headers["retry-after"]) >= 1
    finally:
        stop_logflow(flow)
