"""The simulated traders: what each kind decides to do, given what it observes.

Agents (each runs with its own account and token, see bots/market.py):
- MarketMaker quotes both sides around the fair value: half-spread QUOTE_HALF_SPREAD_BPS,
  skewed against its inventory (long -> both quotes lower), no bid at its inventory limit and
  no ask without units. It bids for its target inventory in an offering.
- NoiseTrader arrives as a Poisson process (exponential gaps at NOISE_RATE_PER_S) and sends a
  random-size order, half of them marketable (IOC at the touch), the rest resting near mid.
- InformedTrader reacts to a royalty announcement (a new distribution period): the fair value
  has risen, so it buys what trades below the new value; it sells above the value otherwise.
- MomentumTrader buys after the last price rose by MOMENTUM_TICKS over its lookback and
  sells (what it holds) after it fell as much.
- OfferingParticipant bids in an offering at the fair value, then sells its allocation bit
  by bit above the fair value (the supply of a thin market).

Invariants:
- Decisions are pure functions of (the agent's seeded random.Random, the time and market it
  is shown, its own holdings): the same seed and the same observations give the same
  actions, in the same order. Nothing here performs I/O or reads a clock.
- Prices are whole ticks clamped into the band the exchange enforces; quantities whole
  units; buys never spend more than the cash not already committed; sells never exceed the
  units not already offered (no short selling on IPX).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

QUOTE_HALF_SPREAD_BPS = 50
QUOTE_UNITS = 20
INVENTORY_LIMIT_UNITS = 400
TARGET_INVENTORY_UNITS = 200
MARKET_MAKER_INTERVAL_S = 0.5
NOISE_RATE_PER_S = 2.0
NOISE_UNITS_MAX = 15
NOISE_REST_TICKS_MAX = 10
INFORMED_INTERVAL_S = 0.5
INFORMED_UNITS = 30
INFORMED_EDGE_BPS = 100
MOMENTUM_INTERVAL_S = 1.0
MOMENTUM_LOOKBACK = 5  # Observations of the last price.
MOMENTUM_TICKS = 2
MOMENTUM_UNITS = 10
OFFERING_UNITS = 300
OFFERING_INTERVAL_S = 0.5  # Often enough to bid in a short offering.
OFFERING_SELL_CHANCE_PPM = 250_000  # Per look, in continuous trading: ~0.5 sells a second.
OFFERING_SELL_UNITS = 10
OFFERING_MARKUP_BPS = 30
FEE_MARGIN_BPS = 100  # Cash kept aside for fees when sizing a buy.


@dataclass(frozen=True, slots=True)
class MarketView:
    """What an agent is shown of one instrument (ticks; 0 = none)."""

    symbol: str
    phase: str
    tick_size_minor: int
    fair_ticks: int
    best_bid_ticks: int
    best_ask_ticks: int
    last_ticks: int
    band_low_ticks: int
    band_high_ticks: int
    distribution_period: str | None = None  # The latest royalty announcement seen.
    last_prices: tuple[int, ...] = ()  # Recent last prices, oldest first.

    def clamp(self, price_ticks: int) -> int:
        low = max(1, self.band_low_ticks)
        high = self.band_high_ticks or price_ticks
        return min(max(price_ticks, low), max(low, high))

    def mid_ticks(self) -> int:
        if self.best_bid_ticks and self.best_ask_ticks:
            return (self.best_bid_ticks + self.best_ask_ticks) // 2
        return self.last_ticks or self.fair_ticks


@dataclass(frozen=True, slots=True)
class OpenOrder:
    order_id: int
    symbol: str
    side: str
    price_ticks: int
    leaves_units: int


@dataclass(frozen=True, slots=True)
class Holdings:
    """The agent's own view: total cash (minor units), units per symbol, open orders."""

    cash_minor: int
    units: Mapping[str, int]
    open_orders: Sequence[OpenOrder] = ()

    def free_units(self, symbol: str) -> int:
        offered = sum(
            o.leaves_units for o in self.open_orders if o.symbol == symbol and o.side == "sell"
        )
        return self.units.get(symbol, 0) - offered

    def free_cash_minor(self, ticks_minor: Mapping[str, int]) -> int:
        committed = sum(
            o.leaves_units * o.price_ticks * ticks_minor.get(o.symbol, 0)
            for o in self.open_orders
            if o.side == "buy"
        )
        return (self.cash_minor - committed) * (10_000 - FEE_MARGIN_BPS) // 10_000

    def orders_in(self, symbol: str) -> list[OpenOrder]:
        return [order for order in self.open_orders if order.symbol == symbol]


@dataclass(frozen=True, slots=True)
class Place:
    symbol: str
    side: str
    quantity: int
    price_ticks: int
    time_in_force: str = "gtc"


@dataclass(frozen=True, slots=True)
class CancelAll:
    symbol: str


Action = Place | CancelAll
Markets = Mapping[str, MarketView]


def affordable_units(holdings: Holdings, markets: Markets, view: MarketView, price: int) -> int:
    ticks_minor = {symbol: market.tick_size_minor for symbol, market in markets.items()}
    unit_cost = price * view.tick_size_minor
    return holdings.free_cash_minor(ticks_minor) // unit_cost if unit_cost > 0 else 0


def buy(holdings: Holdings, markets: Markets, view: MarketView, units: int, price: int,
        time_in_force: str = "gtc") -> list[Action]:  # fmt: skip
    price = view.clamp(price)
    units = min(units, affordable_units(holdings, markets, view, price))
    return [Place(view.symbol, "buy", units, price, time_in_force)] if units > 0 else []


def sell(holdings: Holdings, view: MarketView, units: int, price: int,
         time_in_force: str = "gtc") -> list[Action]:  # fmt: skip
    price = view.clamp(price)
    units = min(units, holdings.free_units(view.symbol))
    return [Place(view.symbol, "sell", units, price, time_in_force)] if units > 0 else []


@dataclass
class Agent:
    """Base: a name, a seeded random source, the symbols it trades."""

    name: str
    seed: int
    symbols: Sequence[str]
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    kind = "agent"

    def next_delay_s(self) -> float:
        raise NotImplementedError

    def decide(self, now_s: float, markets: Markets, holdings: Holdings) -> list[Action]:
        raise NotImplementedError

    def trading(self, markets: Markets) -> list[MarketView]:
        return [markets[s] for s in self.symbols if s in markets and markets[s].fair_ticks > 0]


@dataclass
class MarketMaker(Agent):
    kind = "market_maker"
    quoted: dict[str, tuple[int, int]] = field(default_factory=dict)
    offered: set[str] = field(default_factory=set)

    def next_delay_s(self) -> float:
        return MARKET_MAKER_INTERVAL_S

    def decide(self, now_s: float, markets: Markets, holdings: Holdings) -> list[Action]:
        actions: list[Action] = []
        for view in self.trading(markets):
            if view.phase == "offering" and view.symbol not in self.offered:
                self.offered.add(view.symbol)
                actions += buy(holdings, markets, view, TARGET_INVENTORY_UNITS, view.fair_ticks)
            elif view.phase == "continuous":
                actions += self._quote(view, markets, holdings)
        return actions

    def _quote(self, view: MarketView, markets: Markets, holdings: Holdings) -> list[Action]:
        position = holdings.units.get(view.symbol, 0)
        half = max(1, view.fair_ticks * QUOTE_HALF_SPREAD_BPS // 10_000)
        # Skew: at the inventory limit the quotes move a full half-spread against the position.
        skew = (position - TARGET_INVENTORY_UNITS) * half // INVENTORY_LIMIT_UNITS
        bid = view.clamp(view.fair_ticks - half - skew)
        ask = view.clamp(max(bid + 1, view.fair_ticks + half - skew))
        resting = holdings.orders_in(view.symbol)
        if self.quoted.get(view.symbol) == (bid, ask) and len(resting) >= 2:
            return []
        self.quoted[view.symbol] = (bid, ask)
        free = Holdings(holdings.cash_minor, holdings.units)  # After the cancel below.
        actions: list[Action] = [CancelAll(view.symbol)] if resting else []
        if position < INVENTORY_LIMIT_UNITS:
            actions += buy(free, markets, view, QUOTE_UNITS, bid)
        actions += sell(free, view, QUOTE_UNITS, ask)
        return actions


@dataclass
class NoiseTrader(Agent):
    kind = "noise"

    def next_delay_s(self) -> float:
        return self.rng.expovariate(NOISE_RATE_PER_S)

    def decide(self, now_s: float, markets: Markets, holdings: Holdings) -> list[Action]:
        views = [v for v in self.trading(markets) if v.phase == "continuous"]
        if not views:
            return []
        view = self.rng.choice(views)
        units = self.rng.randint(1, NOISE_UNITS_MAX)
        side = self.rng.choice(("buy", "sell"))
        marketable = self.rng.random() < 0.5
        offset = self.rng.randint(1, NOISE_REST_TICKS_MAX)
        actions: list[Action] = []
        if self.rng.random() < 0.1 and holdings.orders_in(view.symbol):
            actions.append(CancelAll(view.symbol))
            holdings = Holdings(holdings.cash_minor, holdings.units)
        mid = view.mid_ticks()
        if side == "buy":
            price = view.best_ask_ticks if marketable and view.best_ask_ticks else mid - offset
            return actions + buy(holdings, markets, view, units, price, _tif(marketable))
        price = view.best_bid_ticks if marketable and view.best_bid_ticks else mid + offset
        return actions + sell(holdings, view, units, price, _tif(marketable))


def _tif(marketable: bool) -> str:
    return "ioc" if marketable else "day"


@dataclass
class InformedTrader(Agent):
    kind = "informed"
    known: dict[str, str | None] = field(default_factory=dict)

    def next_delay_s(self) -> float:
        return INFORMED_INTERVAL_S

    def decide(self, now_s: float, markets: Markets, holdings: Holdings) -> list[Action]:
        actions: list[Action] = []
        for view in self.trading(markets):
            if view.phase != "continuous":
                continue
            first_look = view.symbol not in self.known
            news = not first_look and self.known[view.symbol] != view.distribution_period
            self.known[view.symbol] = view.distribution_period
            edge = max(1, view.fair_ticks * INFORMED_EDGE_BPS // 10_000)
            cheap = 0 < view.best_ask_ticks < view.fair_ticks - edge
            # A distribution raised the value, or offers sit below it: take what is offered
            # below the value (less an edge), so the price follows the news.
            if news or cheap:
                price = view.fair_ticks - edge
                actions += buy(holdings, markets, view, INFORMED_UNITS, price, "ioc")
            elif view.best_bid_ticks > view.fair_ticks + edge:
                actions += sell(holdings, view, INFORMED_UNITS, view.best_bid_ticks, "ioc")
        return actions


@dataclass
class MomentumTrader(Agent):
    kind = "momentum"

    def next_delay_s(self) -> float:
        return MOMENTUM_INTERVAL_S * (0.5 + self.rng.random())

    def decide(self, now_s: float, markets: Markets, holdings: Holdings) -> list[Action]:
        actions: list[Action] = []
        for view in self.trading(markets):
            prices = view.last_prices[-MOMENTUM_LOOKBACK:]
            if view.phase != "continuous" or len(prices) < MOMENTUM_LOOKBACK:
                continue
            move = prices[-1] - prices[0]
            if move >= MOMENTUM_TICKS and view.best_ask_ticks:
                actions += buy(holdings, markets, view, MOMENTUM_UNITS, view.best_ask_ticks, "ioc")
            elif move <= -MOMENTUM_TICKS and view.best_bid_ticks:
                actions += sell(holdings, view, MOMENTUM_UNITS, view.best_bid_ticks, "ioc")
        return actions


@dataclass
class OfferingParticipant(Agent):
    kind = "offering"
    bid_in: set[str] = field(default_factory=set)

    def next_delay_s(self) -> float:
        return OFFERING_INTERVAL_S

    def decide(self, now_s: float, markets: Markets, holdings: Holdings) -> list[Action]:
        actions: list[Action] = []
        for view in self.trading(markets):
            if view.phase == "offering" and view.symbol not in self.bid_in:
                self.bid_in.add(view.symbol)
                actions += buy(holdings, markets, view, OFFERING_UNITS, view.fair_ticks)
            elif view.phase == "continuous" and self.rng.randrange(1_000_000) < (
                OFFERING_SELL_CHANCE_PPM
            ):
                markup = max(1, view.fair_ticks * OFFERING_MARKUP_BPS // 10_000)
                price = max(view.fair_ticks + markup, view.best_bid_ticks + 1)
                actions += sell(holdings, view, OFFERING_SELL_UNITS, price)
        return actions


KINDS: dict[str, type[Agent]] = {
    "market_maker": MarketMaker,
    "noise": NoiseTrader,
    "informed": InformedTrader,
    "momentum": MomentumTrader,
    "offering": OfferingParticipant,
}
DEFAULT_POPULATION = {"market_maker": 1, "noise": 4, "informed": 1, "momentum": 1, "offering": 2}


def population(seed: int, symbols: Sequence[str], counts: Mapping[str, int]) -> list[Agent]:
    """Create the agents, each with its own random source derived from the run's seed."""
    master = random.Random(seed)
    agents: list[Agent] = []
    for kind, count in counts.items():
        for index in range(count):
            agents.append(KINDS[kind](f"{kind}{index}", master.getrandbits(64), symbols))
    return agents
