"""Sample patents for `ipx demo`: realistic metadata, share terms and royalty histories.

The numbers are invented but shaped like the real thing: a patent's owner, filing date and a
twenty-year term from filing (35 U.S.C. 154; EPC Art. 63), a CPC class, named licensees, the
royalty base, and trailing-twelve-month royalties in the tens of thousands to millions. Each
instrument's reference price is the bots' fair value (bots/fair_value.py), so the first
auction clears near it and the static band leaves room both ways.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplePatent:
    patent_id: str
    title: str
    jurisdiction: str
    owner_account: str
    filing_date: str
    expiry_date: str
    cpc_class: str
    licensees: tuple[str, ...]
    royalty_terms: str
    currency: str
    trailing_royalties: str  # Last twelve months, in the currency.
    total_units: int
    tick_size: str
    quarterly_royalty: str  # What the demo distributes each "quarter" (every few minutes).

    @property
    def symbol(self) -> str:
        return f"RS-{self.patent_id}"


SAMPLE_PATENTS = (
    SamplePatent(
        patent_id="US10987654B2",
        title="Adaptive entropy coding for low-latency video streams",
        jurisdiction="US",
        owner_account="owner-lumen",
        filing_date="2016-04-12",
        expiry_date="2036-04-12",
        cpc_class="H04N 19/13",
        licensees=("Northwind Devices", "Contoso Media", "Fabrikam Displays"),
        royalty_terms="USD 0.04 per decoder unit shipped",
        currency="USD",
        trailing_royalties="1850000.00",
        total_units=1_000_000,
        tick_size="0.01",
        quarterly_royalty="480000.00",
    ),
    SamplePatent(
        patent_id="EP3141592B1",
        title="Sulfide solid electrolyte for all-solid-state lithium batteries",
        jurisdiction="EP",
        owner_account="owner-voltaic",
        filing_date="2015-09-03",
        expiry_date="2035-09-03",
        cpc_class="H01M 10/0562",
        licensees=("Tailspin Motors", "Adatum Energy"),
        royalty_terms="1.5% of net sales of cells",
        currency="EUR",
        trailing_royalties="920000.00",
        total_units=500_000,
        tick_size="0.01",
        quarterly_royalty="260000.00",
    ),
    SamplePatent(
        patent_id="US11223344B1",
        title="Lipid nanoparticle delivery of guide RNA for in vivo gene editing",
        jurisdiction="US",
        owner_account="owner-helix",
        filing_date="2019-09-17",
        expiry_date="2039-09-17",
        cpc_class="C12N 15/113",
        licensees=("Wide World Therapeutics",),
        royalty_terms="4% of net product sales, USD 250,000 annual minimum",
        currency="USD",
        trailing_royalties="310000.00",
        total_units=250_000,
        tick_size="0.01",
        quarterly_royalty="95000.00",
    ),
    SamplePatent(
        patent_id="US9812345B2",
        title="Blade pitch controller damping tower oscillation in wind turbines",
        jurisdiction="US",
        owner_account="owner-gale",
        filing_date="2013-11-20",
        expiry_date="2033-11-20",
        cpc_class="F03D 7/0224",
        licensees=("Litware Wind", "Proseware Turbines"),
        royalty_terms="USD 1,200 per installed turbine",
        currency="USD",
        trailing_royalties="64000.00",
        total_units=100_000,
        tick_size="0.01",
        quarterly_royalty="15000.00",
    ),
)
