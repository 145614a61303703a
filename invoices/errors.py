"""Domain errors of the ledger: each says what is wrong in words a finance team reads."""
from decimal import Decimal


class DomainError(Exception):
    """A request the ledger refuses; nothing has been changed."""


class InvalidTransition(DomainError):
    def __init__(self, kind: str, obj, current: str, target: str):
        self.current, self.target = current, target
        super().__init__(f"{kind} {obj} cannot go from {current} to {target}")


class TotalsMismatch(DomainError):
    def __init__(self, field: str, expected: Decimal, received: Decimal):
        self.field, self.expected, self.received = field, expected, received
        super().__init__(f"{field}: expected {expected:.2f}, received {received:.2f}")


class UnknownReference(DomainError):
    """Refers to something not (yet) known, such as a payment for an invoice that has not arrived."""
