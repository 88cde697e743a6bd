"""`ipx bots`: a population of agents trading through the real WebSocket API.

Run: set up (bots/market.py: accounts, cash, tokens, offerings of pre-open instruments), then
every agent loops — sleep its own delay, apply its execution reports, decide (bots/agents.py),
send — while a watcher samples each instrument (instrument.info, book.snapshot) into the
agents' MarketView and the Recorder. After --duration every agent stops, and the
consistency check (bots/consistency.py) compares each bot's view with the exchange.

Invariants:
- Bots only ever talk to the exchange through IpxClient sessions of their own accounts; the
  operator session only sets up (accounts, deposits, offerings) and watches.
- The intended actions of each agent are recorded in order (`Bot.intended`): with the same
  seed and the same observations they are the same (tests/bots check it).
- A request that gets no answer (timed out, or the connection lost) is counted, never fatal:
  the agent or the watcher carries on (the watcher's views stay as last seen until a refresh
  is answered). An agent or the watcher that stops on any other error stops only itself; it
  is named in the report and the run exits 1. Either way the run ends with its report, and
  every session it opened is closed, whatever ended it.
- The report's trades and volume are this run's: the counts at its start are subtracted.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bots import agents, consistency, market
from bots.account_view import AccountView
from bots.agents import Action, Agent, CancelAll, MarketView, Place
from bots.market import InstrumentInfo
from bots.report import Recorder, Sample, counts_line, plot_market, table
from bots.run_config import RunConfig, SetUpError, run_command
from gateway import protocol
from gateway.client import ClientError, IpxClient, RequestFailed

CASH_MINOR = {"market_maker": 500_000_000, "offering": 100_000_000}  # 5,000,000.00 / 1,000,000.00
DEFAULT_CASH_MINOR = 20_000_000  # 200,000.00 per other agent.
WATCH_INTERVAL_S = 0.25
INFO_EVERY = 4  # instrument.info once in this many watches; book.snapshot every time.
BOOK_DEPTH = 10
LAST_PRICES_KEPT = 20


@dataclass(kw_only=True)
class BotsConfig(RunConfig):
    symbols: Sequence[str]
    population: dict[str, int] = field(default_factory=lambda: dict(agents.DEFAULT_POPULATION))
    offering_s: float = 2.0


@dataclass
class Bot:
    agent: Agent
    account: str
    client: IpxClient
    view: AccountView
    currency: str
    intended: list[Action] = field(default_factory=list)
    sent: int = 0
    acked: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0  # Requests that got no answer: timed out, or the connection lost.

    def drain(self) -> None:
        while not self.client.pushes.empty():
            self.view.apply_report(self.client.pushes.get_nowait())


@dataclass
class Watcher:
    """The market as the agents see it, refreshed every WATCH_INTERVAL_S."""

    client: IpxClient
    infos: dict[str, InstrumentInfo]
    recorder: Recorder
    started: float
    views: dict[str, MarketView] = field(default_factory=dict)
    last_prices: dict[str, list[int]] = field(default_factory=dict)
    unanswered: int = 0  # Refreshes that got no answer: the views stayed as they were.

    async def refresh(self, with_info: bool) -> None:
        for symbol in self.infos:
            if with_info:
                self.infos[symbol] = await market.instrument_info(self.client, symbol)
            book = await self.client.request(
                "book.snapshot", {"symbol": symbol, "depth": BOOK_DEPTH}
            )
            self._observe(self.infos[symbol], book)

    def _observe(self, info: InstrumentInfo, book: dict[str, object]) -> None:
        def ticks(levels: object) -> list[tuple[int, int]]:
            assert isinstance(levels, list)
            return [
                (protocol.price_to_ticks(p, info.currency, info.tick_size_minor), u)
                for p, u in levels
            ]

        bids, asks = ticks(book["bids"]), ticks(book["asks"])
        fair = info.fair_ticks(time.time_ns())
        prices = self.last_prices.setdefault(info.symbol, [])
        if info.last_ticks:
            prices.append(info.last_ticks)
            del prices[:-LAST_PRICES_KEPT]
        self.views[info.symbol] = MarketView(
            symbol=info.symbol,
            phase=str(book["phase"]),
            tick_size_minor=info.tick_size_minor,
            fair_ticks=fair,
            best_bid_ticks=bids[0][0] if bids else 0,
            best_ask_ticks=asks[0][0] if asks else 0,
            last_ticks=info.last_ticks,
            band_low_ticks=info.band_low_ticks,
            band_high_ticks=info.band_high_ticks,
            distribution_period=market.latest_distribution(info),
            last_prices=tuple(prices),
        )
        elapsed_ms = int((time.monotonic() - self.started) * 1000)
        self.recorder.add(
            info.symbol,
            Sample(
                elapsed_ms,
                self.views[info.symbol].best_bid_ticks,
                self.views[info.symbol].best_ask_ticks,
                info.last_ticks,
                fair,
                sum(units for _, units in bids),
                sum(units for _, units in asks),
            ),
        )

    async def look(self, with_info: bool) -> None:
        """Refresh, or count a refresh that got no answer (the views stay as they were)."""
        try:
            await self.refresh(with_info)
        except ClientError:
            self.unanswered += 1

    async def run(self, stop: asyncio.Event) -> None:
        count = 0
        while not stop.is_set():
            count += 1
            await self.look(with_info=count % INFO_EVERY == 0)
            await asyncio.sleep(WATCH_INTERVAL_S)


async def execute(bot: Bot, action: Action, infos: dict[str, InstrumentInfo]) -> None:
    """Send one action through the bot's own session; count what came back."""
    bot.intended.append(action)
    try:
        if isinstance(action, Place):
            bot.sent += 1
            price = market.price_text(action.price_ticks, infos[action.symbol])
            await bot.client.place(
                action.symbol,
                action.side,
                action.quantity,
                price,
                time_in_force=action.time_in_force,
            )
            bot.acked += 1
        elif isinstance(action, CancelAll):
            await bot.client.request("order.cancel_all", {"symbol": action.symbol})
    except RequestFailed as error:
        bot.rejected[error.code] = bot.rejected.get(error.code, 0) + 1
    except ClientError:
        # No answer, after the client's retries: done or not, its execution reports (if
        # any) still reach the view. The bot goes on with its next decision.
        bot.unanswered += 1


async def run_agent(bot: Bot, watcher: Watcher, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), bot.agent.next_delay_s())
        if stop.is_set():
            return
        bot.drain()
        now_s = time.monotonic() - watcher.started
        for action in bot.agent.decide(now_s, watcher.views, bot.view.holdings(bot.currency)):
            await execute(bot, action, watcher.infos)


async def set_up(
    config: BotsConfig, operator: IpxClient, sessions: contextlib.AsyncExitStack
) -> tuple[list[Bot], dict[str, InstrumentInfo]]:
    """Open, fund and log on every agent's account; subscribe it to its execution reports.

    Each session opened is closed by `sessions`, also when a later step fails.
    """
    if config.data_dir is None:
        raise SetUpError("--data-dir is needed: bot tokens are issued on the server's host")
    if not config.symbols:
        raise SetUpError("no instrument to trade (--instruments)")
    infos = {s: await market.instrument_info(operator, s) for s in config.symbols}
    currencies = sorted({info.currency for info in infos.values()})
    terms = {symbol: info.terms for symbol, info in infos.items()}
    run_id = secrets.token_hex(3)  # Accounts are new in every run, even on the same data dir.
    bots = []
    for agent in agents.population(config.seed, list(config.symbols), config.population):
        account = f"bot-{run_id}-{agent.name}"
        role = "market_maker" if agent.kind == "market_maker" else "investor"
        token = await market.open_bot_account(operator, config.data_dir, account, role)
        client = await market.connect(config.url, token)
        sessions.push_async_callback(client.close)
        if agent.kind == "market_maker":  # As real ones do: no stale quotes after a drop.
            await client.cancel_on_disconnect()
        view = AccountView(account, terms, last_seq=(await client.subscribe_executions())["seq"])
        for currency in currencies:
            cash = CASH_MINOR.get(agent.kind, DEFAULT_CASH_MINOR)
            await market.deposit(operator, account, currency, cash)
        bots.append(Bot(agent, account, client, view, currencies[0]))
    return bots, infos


async def open_offerings(
    config: BotsConfig, operator: IpxClient, infos: dict[str, InstrumentInfo]
) -> list[str]:
    offered = []
    for symbol, info in infos.items():
        if info.phase == "pre_open":
            await market.open_offering(operator, info, config.offering_s, time.time_ns())
            offered.append(symbol)
    return offered


def progress_line(elapsed_s: float, bots: Sequence[Bot], watcher: Watcher) -> str:
    sent = sum(bot.sent for bot in bots)
    acked = sum(bot.acked for bot in bots)
    rejected = sum(sum(bot.rejected.values()) for bot in bots)
    unanswered = sum(bot.unanswered for bot in bots) + watcher.unanswered
    quotes = []
    for symbol, view in sorted(watcher.views.items()):
        info = watcher.infos[symbol]
        quotes.append(
            f"{symbol} {view.phase} {view.best_bid_ticks}x{view.best_ask_ticks} "
            f"last {view.last_ticks} trades {info.trade_count}"
        )
    counts = f"sent {sent} acked {acked} rejected {rejected} unanswered {unanswered}"
    return f"[{elapsed_s:5.1f}s] {counts} | " + " | ".join(quotes)


async def run_bots(config: BotsConfig, stop_early: asyncio.Event | None = None) -> int:
    """Run the simulation (until its duration, or stop_early); print progress and the report.

    Every session it opens is closed when it ends, whatever ended it.

    Raises:
        SetUpError, RequestFailed: the run cannot start as configured (bots/cli.py: exit 2).
        Unreachable, ClientError: the exchange cannot be reached, or stopped answering
            before the run could start or be checked (exit 3).
    """
    async with contextlib.AsyncExitStack() as sessions:
        operator = await market.operator_client(
            config.url, config.token, config.data_dir, config.operator
        )
        sessions.push_async_callback(operator.close)
        bots, infos = await set_up(config, operator, sessions)
        return await _run(config, operator, bots, infos, stop_early)


async def _run(
    config: BotsConfig,
    operator: IpxClient,
    bots: Sequence[Bot],
    infos: dict[str, InstrumentInfo],
    stop_early: asyncio.Event | None,
) -> int:
    recorder = Recorder()
    for symbol, info in infos.items():
        recorder.tick_size_minor[symbol] = info.tick_size_minor
        recorder.currency_digits[symbol] = protocol.currency_digits(info.currency)
    watcher = Watcher(operator, infos, recorder, time.monotonic())
    await watcher.refresh(with_info=True)
    offered = await open_offerings(config, operator, infos)
    if offered:
        print(f"offerings opened for {', '.join(offered)} ({config.offering_s:g} s)", flush=True)
    before = dict(infos)  # The watcher replaces the entries of `infos`, not these.
    stop = asyncio.Event()
    names = ["watcher", *(bot.account for bot in bots)]
    tasks = [asyncio.create_task(watcher.run(stop))]
    tasks += [asyncio.create_task(run_agent(bot, watcher, stop)) for bot in bots]
    deadline = watcher.started + config.duration_s
    # Done within a millisecond of the deadline: uvloop keeps time in whole milliseconds, so
    # a shorter sleep returns at once, and this loop printed a line each time until then.
    while deadline - time.monotonic() >= 0.001 and not (stop_early and stop_early.is_set()):
        await asyncio.sleep(min(1.0, deadline - time.monotonic()))
        print(progress_line(time.monotonic() - watcher.started, bots, watcher), flush=True)
    stop.set()
    # One that stopped on an error must not hide the others' results, nor the report.
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    stopped = [
        f"{name} stopped early: {outcome!r}"
        for name, outcome in zip(names, outcomes, strict=True)
        if isinstance(outcome, BaseException)
    ]
    await watcher.look(with_info=True)
    return await finish(config, bots, watcher, before, stopped)


async def finish(
    config: BotsConfig,
    bots: Sequence[Bot],
    watcher: Watcher,
    before: Mapping[str, InstrumentInfo],
    stopped: Sequence[str] = (),
) -> int:
    def drain_all() -> None:
        for bot in bots:
            bot.drain()

    check = await consistency.check_accounts([(b.view, b.client) for b in bots], drain_all)
    ledger_dir = config.data_dir if config.verify_ledger else None
    await consistency.check_server(check, config.url, ledger_dir)
    print(bots_report(bots, watcher, before, check, stopped))
    if config.plot_dir:
        for path in plot_market(watcher.recorder, config.plot_dir):
            print(f"wrote {path}")
    return 0 if check.passed and not stopped else 1


def bots_report(
    bots: Sequence[Bot],
    watcher: Watcher,
    before: Mapping[str, InstrumentInfo],
    check: consistency.ConsistencyReport,
    stopped: Sequence[str] = (),
) -> str:
    rows: list[list[object]] = [
        ["symbol", "phase", "trades", "volume", "bid", "ask", "last", "fair"]
    ]
    for symbol, info in sorted(watcher.infos.items()):
        view = watcher.views[symbol]
        rows.append(
            [
                symbol,
                view.phase,
                info.trade_count - before[symbol].trade_count,
                info.volume_units - before[symbol].volume_units,
                _price_or_dash(view.best_bid_ticks, info),
                _price_or_dash(view.best_ask_ticks, info),
                _price_or_dash(view.last_ticks, info),
                _price_or_dash(view.fair_ticks, info),
            ]
        )
    agent_rows: list[list[object]] = [
        ["bot", "sent", "acked", "rejected by reason", "unanswered", "fills"]
    ]
    for bot in bots:
        agent_rows.append(
            [
                bot.account,
                bot.sent,
                bot.acked,
                counts_line(bot.rejected),
                bot.unanswered,
                len(bot.view.fills),
            ]
        )
    lines = ["", "market", table(rows), "", "bots", table(agent_rows), ""]
    if watcher.unanswered:
        lines.append(f"market views not refreshed (no answer): {watcher.unanswered}")
    lines += stopped
    verdict = "passed" if not check.mismatches else "FAILED"
    lines.append(f"consistency ({check.accounts_checked} accounts): {verdict}")
    lines += [f"  {problem}" for problem in check.mismatches + check.notes]
    if check.ledger_verified is not None:
        lines.append(f"ipx ledger verify: {'passed' if check.ledger_verified else 'FAILED'}")
        if not check.ledger_verified:
            lines.append(check.ledger_output)
    lines.append(f"market data: {consistency.MARKET_DATA_STATES[check.market_data_running]}")
    return "\n".join(lines)


def _price_or_dash(ticks: int, info: InstrumentInfo) -> str:
    return market.price_text(ticks, info) if ticks else "-"


def main(config: BotsConfig) -> int:
    return run_command("bots", config.url, run_bots(config))
