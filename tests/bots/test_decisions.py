"""What the agents decide, and that a seed fixes it.

Rules:
- The market maker quotes fair +/- half-spread (QUOTE_HALF_SPREAD_BPS), skewed against its
  inventory: skew = (position - target) x half // limit ticks; no bid at the inventory
  limit, no ask without units.
- Noise traders arrive as a Poisson process: exponential gaps with mean 1 / NOISE_RATE_PER_S.
- The same seed and the same observations give the same intended actions; another seed
  gives others.
- ipx stress: enough accounts for the rate and the connections (at least two); every slot
  k of the run is scheduled once, at k / rate, on connection k mod C.
"""

from __future__ import annotations

import random

from bots import agents
from bots.agents import CancelAll, Holdings, MarketMaker, MarketView, NoiseTrader, Place
from bots.stress import order_params, plan, slot_ns, slot_offsets_ns

SEED = 42
SYMBOL = "RS-US10987654B2"


def view(**changes: object) -> MarketView:
    fields: dict[str, object] = {
        "symbol": SYMBOL,
        "phase": "continuous",
        "tick_size_minor": 10,
        "fair_ticks": 700,
        "best_bid_ticks": 698,
        "best_ask_ticks": 703,
        "last_ticks": 700,
        "band_low_ticks": 630,
        "band_high_ticks": 770,
    }
    fields.update(changes)
    return MarketView(**fields)  # type: ignore[arg-type]


RICH = 1_000_000_000  # 10,000,000.00: cash never limits these examples.


def test_market_maker_quotes_around_fair_value_with_skew() -> None:
    maker = MarketMaker("mm", SEED, [SYMBOL])
    markets = {SYMBOL: view()}
    # Flat: half = 700 x 50 // 10000 = 3; skew = (0 - 200) x 3 // 400 = -2: bid 699; no units.
    assert maker.decide(0.0, markets, Holdings(RICH, {})) == [Place(SYMBOL, "buy", 20, 699)]
    # Long 600 (limit 400): skew = 400 x 3 // 400 = 3: no bid, ask 700 + 3 - 3 = 700.
    maker = MarketMaker("mm", SEED, [SYMBOL])
    actions = maker.decide(0.0, markets, Holdings(RICH, {SYMBOL: 600}))
    assert actions == [Place(SYMBOL, "sell", 20, 700)]


def test_market_maker_replaces_stale_quotes() -> None:
    maker = MarketMaker("mm", SEED, [SYMBOL])
    resting = (
        agents.OpenOrder(1, SYMBOL, "buy", 690, 20),
        agents.OpenOrder(2, SYMBOL, "sell", 710, 20),
    )
    actions = maker.decide(0.0, {SYMBOL: view()}, Holdings(RICH, {SYMBOL: 200}, resting))
    # At target inventory: no skew, bid 697, ask 703; the old quotes go first.
    assert actions == [
        CancelAll(SYMBOL),
        Place(SYMBOL, "buy", 20, 697),
        Place(SYMBOL, "sell", 20, 703),
    ]


def test_noise_arrivals_are_exponential() -> None:
    print(f"seed {SEED}")
    trader = NoiseTrader("noise", SEED, [SYMBOL])
    gaps = [trader.next_delay_s() for _ in range(4_000)]
    mean = sum(gaps) / len(gaps)
    assert all(gap > 0 for gap in gaps)
    assert abs(mean - 1 / agents.NOISE_RATE_PER_S) < 0.05 / agents.NOISE_RATE_PER_S * 2
    # Memoryless: about e^-1 of the gaps exceed the mean.
    beyond = sum(gap > 1 / agents.NOISE_RATE_PER_S for gap in gaps) / len(gaps)
    assert 0.33 < beyond < 0.40


def scripted_run(seed: int) -> list[tuple[str, float, list[agents.Action]]]:
    """Feed every agent the same 40 observations; return every intended action in order."""
    script = random.Random(1234)  # The observations: fixed, whatever the agents' seed.
    population = agents.population(seed, [SYMBOL], agents.DEFAULT_POPULATION)
    intended: list[tuple[str, float, list[agents.Action]]] = []
    prices: list[int] = []
    for step in range(40):
        last = 700 + script.randint(-6, 6)
        prices.append(last)
        market = view(
            phase="offering" if step < 3 else "continuous",
            best_bid_ticks=last - 2,
            best_ask_ticks=last + 2,
            last_ticks=last,
            distribution_period="1" if step >= 20 else None,
            last_prices=tuple(prices[-10:]),
        )
        holdings = Holdings(RICH, {SYMBOL: script.randint(0, 500)})
        for agent in population:
            delay = agent.next_delay_s()
            intended.append(
                (agent.name, round(delay, 9), agent.decide(step, {SYMBOL: market}, holdings))
            )
    return intended


def test_same_seed_same_intended_actions() -> None:
    print(f"seeds {SEED} and {SEED + 1}")
    first, second = scripted_run(SEED), scripted_run(SEED)
    assert first == second
    assert sum(len(actions) for _, _, actions in first) > 40
    assert scripted_run(SEED + 1) != first


def test_stress_plan_spreads_load_over_accounts() -> None:
    assert plan(300, 2) == (2, 2)
    assert plan(2_000, 4) == (5, 5)  # 2000 / 400 a second per account.
    assert plan(100, 40) == (3, 42)  # 16 connections a token (one an account), as many each.
    assert plan(2_500, 8) == (7, 14)  # Never one account with twice the others' share.


def test_stress_slots_cover_the_run_once_at_fixed_intervals() -> None:
    slots = [list(slot_offsets_ns(10, 1.0, 3, c)) for c in range(3)]
    assert slots == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert [slot_ns(k, 10) for k in (0, 1, 3)] == [0, 100_000_000, 300_000_000]


def test_stress_orders_follow_the_seed() -> None:
    first = [order_params(random.Random(f"{SEED}/0")) for _ in range(1)]
    rng_a, rng_b = random.Random(f"{SEED}/0"), random.Random(f"{SEED}/0")
    assert [order_params(rng_a) for _ in range(50)] == [order_params(rng_b) for _ in range(50)]
    assert first[0]["quantity"] >= 1
