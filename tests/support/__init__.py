"""A test-only app: models that exercise the foundation's primitives before real apps use them."""
