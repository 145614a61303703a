"""Exact Online, both ways: OAuth tokens, one rate-limited client, the Sync API in, bank entries out."""
