"""Log stores: the embedded SQLite/FTS5 store and the OpenSearch/Elasticsearch store."""
