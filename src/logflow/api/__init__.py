"""The REST API: schemas, dependencies and one route module per resource."""
