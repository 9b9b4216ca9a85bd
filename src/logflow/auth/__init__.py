"""Users, tokens, API keys, rate limits and the audit trail (see docs/security.md).

``deps`` holds the FastAPI dependencies every route uses; ``service.AuthService`` is the per-app
state they share (the signing key, the rate limiter, the database sessions).
"""
