"""When the platform asks the payer's module to confirm a transaction code (flow F-D + F-A).

Two signatures already bind a countersigned code: the generating module's and the scanner's.
For larger amounts, or for every collection code, a deployment may want the payer to approve
once more, on the platform's own signed request, what the platform is about to settle: the
payee the scanner named, the amount, the code's id. That closes two gaps the signatures leave:

* a **payment code without payee** is a bearer instrument until it is paid; above the
  threshold the payer sees and approves the merchant who scanned it before money moves;
* a **collection code** is paid on the scanning payer's countersignature, which the payer's
  module made on a request from an app on the payer's own host; the confirmation comes from
  the platform, signed, naming the transaction the ledger holds.

The policy is the operator's (``blegw-platform serve --code-confirm-above``,
``--code-confirm-collection``; docs/transaction-codes.md). Pure data: no I/O, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2e.messages import MAX_AMOUNT_MINOR

__all__ = ["CodeConfirmation"]


@dataclass(frozen=True, slots=True)
class CodeConfirmation:
    """The platform's confirmation policy for transaction codes; the default asks for none."""

    above_minor: int | None = None
    """Ask when the amount is strictly above this many minor units (any currency); None: never
    for the amount alone. 0 asks for every code."""
    collection: bool = False
    """Ask for every collection code, whatever the amount."""

    def __post_init__(self) -> None:
        if self.above_minor is not None and (
                isinstance(self.above_minor, bool) or not isinstance(self.above_minor, int)
                or not 0 <= self.above_minor <= MAX_AMOUNT_MINOR):
            raise ValueError(f"the confirmation threshold is 0..{MAX_AMOUNT_MINOR} minor units")

    def needs(self, *, collection: bool, amount_minor: int) -> bool:
        """Whether a code of this kind and amount is settled only on the payer's approval."""
        if collection and self.collection:
            return True
        return self.above_minor is not None and amount_minor > self.above_minor

    def describe(self) -> str:
        parts = []
        if self.above_minor is not None:
            parts.append(f"above {self.above_minor} minor units")
        if self.collection:
            parts.append("every collection code")
        return "confirm " + " and ".join(parts) if parts else "no confirmation"
