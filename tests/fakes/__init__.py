"""Local HTTP servers that stand in for external APIs, following their published references."""
