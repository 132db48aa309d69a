"""The patient booking API (FastAPI): create_app(), dependencies, routes, schemas, errors."""
