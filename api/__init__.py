"""The HTTP layer: FastAPI app, routes, HTTP-only schemas, error mapping (imports service only)."""
