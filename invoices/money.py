"""Money: Decimal amounts with a currency, rounded half-up to the cent, never floats."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def round_money(amount: Decimal) -> Decimal:
    """Half-up to two decimals: 0.005 becomes 0.01, -0.005 becomes -0.01."""
    if isinstance(amount, float):
        raise TypeError("money is never a float")
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self):
        if isinstance(self.amount, float):
            raise TypeError("money is never a float")
        object.__setattr__(self, "amount", round_money(Decimal(self.amount)))

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __str__(self):
        return f"{self.currency} {self.amount:.2f}"


@dataclass(frozen=True)
class LineAmounts:
    net: Decimal
    tax: Decimal
    total: Decimal


def line_amounts(*, quantity: Decimal, unit_price: Decimal, discount_percent: Decimal,
                 tax_rate: Decimal) -> LineAmounts:
    """One line: net = qty × price × (1 − discount%), tax = net × rate%, each rounded half-up."""
    net = round_money(quantity * unit_price * (Decimal(100) - discount_percent) / Decimal(100))
    tax = round_money(net * tax_rate / Decimal(100))
    return LineAmounts(net=net, tax=tax, total=net + tax)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    tax_breakdown: dict[Decimal, tuple[Decimal, Decimal]]  # rate -> (base, tax)


def document_totals(lines) -> Totals:
    """Totals of a document from its lines (dicts or objects with quantity, unit_price,
    discount_percent and tax_rate): sums of the rounded lines, and base and tax per rate."""
    subtotal = tax_total = ZERO
    breakdown: dict[Decimal, tuple[Decimal, Decimal]] = {}
    for line in lines:
        get = line.get if isinstance(line, dict) else lambda name: getattr(line, name)
        amounts = line_amounts(quantity=Decimal(get("quantity")), unit_price=Decimal(get("unit_price")),
                               discount_percent=Decimal(get("discount_percent")),
                               tax_rate=Decimal(get("tax_rate")))
        rate = Decimal(get("tax_rate")).normalize()
        base, tax = breakdown.get(rate, (ZERO, ZERO))
        breakdown[rate] = (base + amounts.net, tax + amounts.tax)
        subtotal += amounts.net
        tax_total += amounts.tax
    return Totals(subtotal=subtotal, tax_total=tax_total, total=subtotal + tax_total,
                  tax_breakdown=dict(sorted(breakdown.items())))
