"""Peppol, the third way a document reaches a client (beside the portal and email): a brand's
access-point connection, participant discovery per client, and one delivery per document."""
