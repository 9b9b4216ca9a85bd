#!/usr/bin/env python3
"""Functional smoke test of the running stack (stdlib only; used by `scripts/stack.sh smoke`).

OpenSearch: standard analyzer, index template, _bulk, match query, terms and
date_histogram aggregations, _delete_by_query.  Redis: SET/GET over RESP.
PostgreSQL: login as logflow to logflow and logflow_test (via psql).
Kafka is checked separately by KafkaSmoke.java.

Usage: smoke.py [opensearch|redis|postgres ...]   (ports from the usual env vars)
"""
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

HOST = "127.0.0.1"
OS_URL = f"http://{HOST}:{os.environ.get('OPENSEARCH_PORT', '9200')}"
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
PG_PORT = os.environ.get("POSTGRES_PORT", "5432")


def call(method, path, body=None, ndjson=False):
    data = None
    headers = {}
    if body is not None:
        if ndjson:
            data = ("\n".join(json.dumps(line) for line in body) + "\n").encode()
            headers["Content-Type"] = "application/x-ndjson"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(OS_URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path} -> {exc.code}: {exc.read()[:500]!r}") from None


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"  ok  {what}")


def smoke_opensearch():
    print(f"opensearch {OS_URL}")
    info = call("GET", "/")
    check(info["version"]["distribution"] == "opensearch", f"version {info['version']['number']}")
    idx = "logflow-smoke-000001"
    call("DELETE", "/logflow-smoke-*")
    tokens = call("POST", "/_analyze", {"analyzer": "standard", "text": "Disk FULL on host-42!"})
    check([t["token"] for t in tokens["tokens"]] == ["disk", "full", "on", "host", "42"],
          "standard analyzer tokens")
    call("PUT", "/_index_template/logflow-smoke", {
        "index_patterns": ["logflow-smoke-*"],
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {
                "@timestamp": {"type": "date"},
                "level": {"type": "keyword"},
                "service": {"type": "keyword"},
                "message": {"type": "text", "analyzer": "standard"},
            }},
        },
    })
    docs = [
        ("2026-01-01T10:05:00Z", "ERROR", "api", "Disk full on host-42"),
        ("2026-01-01T10:35:00Z", "WARN", "api", "disk almost full"),
        ("2026-01-01T11:10:00Z", "ERROR", "worker", "Connection refused"),
        ("2026-01-01T12:00:00Z", "INFO", "worker", "started"),
    ]
    lines = []
    for ts, level, svc, msg in docs:
        lines.append({"index": {"_index": idx}})
        lines.append({"@timestamp": ts, "level": level, "service": svc, "message": msg})
    bulk = call("POST", "/_bulk?refresh=true", lines, ndjson=True)
    check(not bulk["errors"] and len(bulk["items"]) == 4, "_bulk indexed 4 docs")
    settings = call("GET", f"/{idx}/_settings")
    check(settings[idx]["settings"]["index"]["number_of_replicas"] == "0", "index template applied")
    res = call("POST", f"/{idx}/_search", {
        "query": {"bool": {
            "must": [{"match": {"message": "DISK"}}],
            "filter": [{"range": {"@timestamp": {"gte": "2026-01-01T00:00:00Z"}}}],
        }},
        "size": 10,
    })
    check(res["hits"]["total"]["value"] == 2, "match query on analyzed text (2 hits)")
    res = call("POST", f"/{idx}/_search", {
        "size": 0,
        "aggs": {
            "levels": {"terms": {"field": "level"}},
            "per_hour": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}},
            "per_day": {"date_histogram": {"field": "@timestamp", "calendar_interval": "day"}},
        },
    })
    levels = {b["key"]: b["doc_count"] for b in res["aggregations"]["levels"]["buckets"]}
    check(levels == {"ERROR": 2, "WARN": 1, "INFO": 1}, f"terms agg {levels}")
    hours = [b["doc_count"] for b in res["aggregations"]["per_hour"]["buckets"]]
    check(hours == [2, 1, 1], f"date_histogram fixed_interval=1h {hours}")
    check(res["aggregations"]["per_day"]["buckets"][0]["doc_count"] == 4, "date_histogram calendar_interval=day")
    dbq = call("POST", f"/{idx}/_delete_by_query?refresh=true",
               {"query": {"range": {"@timestamp": {"lt": "2026-01-01T11:00:00Z"}}}})
    check(dbq["deleted"] == 2, "_delete_by_query (reindex module)")
    call("DELETE", f"/{idx}")
    call("DELETE", "/_index_template/logflow-smoke")


def smoke_redis():
    print(f"redis {HOST}:{REDIS_PORT}")
    with socket.create_connection((HOST, REDIS_PORT), timeout=5) as s:
        def cmd(*args):
            out = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
            s.sendall(out.encode())
            return s.recv(4096)
        check(cmd("SET", "logflow:smoke", "1", "EX", "10") == b"+OK\r\n", "SET")
        check(cmd("GET", "logflow:smoke") == b"$1\r\n1\r\n", "GET")
        cmd("DEL", "logflow:smoke")


def smoke_postgres():
    print(f"postgres {HOST}:{PG_PORT}")
    env = dict(os.environ, PGPASSWORD="logflow", PGCONNECT_TIMEOUT="5")
    for db in ("logflow", "logflow_test"):
        out = subprocess.run(
            ["psql", "-X", "-tA", "-h", HOST, "-p", PG_PORT, "-U", "logflow", "-d", db,
             "-c", "create temp table t(x int); insert into t values (41); select x + 1 from t"],
            env=env, capture_output=True, text=True, check=False)
        check(out.returncode == 0 and out.stdout.strip().endswith("42"), f"login + temp table in {db}")


def main():
    which = sys.argv[1:] or ["opensearch", "redis", "postgres"]
    failed = False
    for name in which:
        try:
            globals()[f"smoke_{name}"]()
        except Exception as exc:  # noqa: BLE001
            failed = True
            print(f"  FAIL {name}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
