"""invoices app: see ARCHITECTURE.md; it fills up in the issue that builds it."""
