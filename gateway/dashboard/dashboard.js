// IPX operator dashboard: one WebSocket session to the gateway's API on this host.
//
// Rules this page keeps:
// - It is an ordinary client: session.logon {token}, then instruments.list, instrument.info,
//   md.subscribe {symbol, channels} and op.* requests. Everything an operator does here is an
//   op.* command, authorized and journaled by the server like any other.
// - The token comes from the URL fragment (#token=..., never sent to the server by the
//   browser) or the token field, and is kept in sessionStorage (this tab only); the fragment
//   is removed from the address bar once read.
// - Market data is applied by seq: a snapshot resets a channel, an update applies only when
//   its prev_seq is the last seq applied, one at or below it is dropped, and a gap makes the
//   page subscribe to that channel again for a fresh snapshot.
// - Prices stay the server's decimal strings on display. The spread (ask - bid, and in bps of
//   mid rounded down, as the liquidity channel defines it) is computed exactly with BigInt
//   from the ticker's strings, so it always matches the bid and ask shown. Like the channel's
//   it exists only for a two-sided quote (bid < ask) in continuous trading: an auction's book
//   may be crossed and nothing trades at its prices, so there it is "—", never negative. The
//   "liquidity" channel gives depth, volume, turnover, yield, flags and windowed figures, and
//   without it (a server that refuses the subscription) the page falls back to the book, the
//   ticker and instrument.info. Floats are used only to place points on the charts.
// - No channel announces a new instrument: the list is read again every
//   INSTRUMENTS_REFRESH_MS and a symbol issued since is added and subscribed, with no reload.
// - Every text from the server goes into the page with textContent, never as HTML.
// - Each operator action asks for confirmation (window.confirm) and shows its answer.
"use strict";

const MARKET_CHANNELS = ["ticker", "book.l2", "trades", "status"];
const LIQUIDITY = "liquidity";
const PRICE_POINTS_MAX = 600; // Per instrument on the price chart.
const FEED_MAX = 200;
const DEPTH_LEVELS = 20; // Per side on the depth chart.
const RECONNECT_MAX_MS = 10000;
const INFO_REFRESH_MS = 30000;
const INSTRUMENTS_REFRESH_MS = 5000; // tests/gateway/test_dashboard_browser.py waits for it.
const WIDE_SPREAD_BPS = 500n; // As the server's default, used only without the liquidity channel.

const state = {
  socket: null,
  nextId: 1,
  pending: new Map(), // request id -> {resolve, reject}
  account: null,
  role: null,
  instruments: new Map(), // symbol -> Instrument
  reconnectMs: 500,
  authFailed: false,
  liquidityServed: null, // null until the first answer, then true or false.
};

function $(selector) { return document.querySelector(selector); }

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Token: fragment first, then sessionStorage, else the form.

function takeToken() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromFragment = fragment.get("token");
  if (fromFragment) {
    sessionStorage.setItem("ipx.token", fromFragment);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("ipx.token");
}

function showLogon(message) {
  $("#logon-panel").hidden = false;
  $("#main").hidden = true;
  $("#logon-error").textContent = message || "";
}

// Exact decimals: "12.30" -> {value: 1230n, digits: 2}.

function decimal(text) {
  if (text === null || text === undefined) return null;
  const [whole, fraction = ""] = String(text).split(".");
  return { value: BigInt(whole + fraction), digits: fraction.length };
}

function decimalText(value, digits) {
  const negative = value < 0n;
  const digitsText = (negative ? -value : value).toString().padStart(digits + 1, "0");
  const whole = digitsText.slice(0, digitsText.length - digits);
  const fraction = digits ? "." + digitsText.slice(digitsText.length - digits) : "";
  return (negative ? "-" : "") + whole + fraction;
}

function spreadOf(phase, bidText, askText) {
  // ask - bid in the prices' decimals, and (ask-bid)/mid in bps rounded down:
  // (ask-bid) * 10000 / ((ask+bid)/2) = (ask-bid) * 20000 / (ask+bid). Null without a
  // quote (the liquidity channel's: continuous trading, 0 < bid < ask), so the spread is
  // always positive and BigInt's division, which truncates, rounds it down.
  const bid = decimal(bidText);
  const ask = decimal(askText);
  if (phase !== "continuous" || !bid || !ask) return null;
  const digits = Math.max(bid.digits, ask.digits);
  const scale = (d) => d.value * 10n ** BigInt(digits - d.digits);
  const bidValue = scale(bid);
  const askValue = scale(ask);
  if (bidValue <= 0n || askValue <= bidValue) return null;
  const spread = askValue - bidValue;
  return { text: decimalText(spread, digits), bps: (spread * 20000n) / (askValue + bidValue) };
}

function percentText(parts, per) {
  // An integer ratio (bps: per 10_000, ppm: per 1_000_000) as a percentage, rounded down.
  if (parts === null || parts === undefined) return "—";
  const hundredths = (BigInt(parts) * 10000n) / BigInt(per); // Percent x 100.
  return decimalText(hundredths, 2) + "%";
}

function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds <= 0) return "expired";
  const days = Math.floor(seconds / 86400);
  const years = Math.floor(days / 365);
  if (years >= 1) return `${years}y ${days % 365}d`;
  if (days >= 1) return `${days}d ${Math.floor((seconds % 86400) / 3600)}h`;
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor((seconds % 3600) / 60))}:${pad(
    seconds % 60)}`;
}

function clockText(tsMs) {
  return new Date(tsMs).toISOString().slice(11, 19);
}

// The WebSocket session.

function connect() {
  const token = takeToken();
  if (!token) { showLogon(); return; }
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/");
  state.socket = socket;
  setConnection("connecting", false);
  socket.addEventListener("open", () => logon(token));
  socket.addEventListener("message", (event) => receive(event.data));
  socket.addEventListener("close", (event) => closed(socket, event));
}

async function logon(token) {
  try {
    const result = await request("session.logon", { token });
    state.account = result.account;
    state.role = result.role;
    state.reconnectMs = 500;
    $("#logon-panel").hidden = true;
    $("#main").hidden = false;
    $("#logout-button").hidden = false;
    $("#session-account").textContent = `${result.account} (${result.role})`;
    $("#operator-panel").hidden = result.role !== "operator";
    setConnection("live", true);
    await loadInstruments();
  } catch (error) {
    if (error.status === 401) {
      state.authFailed = true;
      sessionStorage.removeItem("ipx.token");
      showLogon(`Logon refused: ${error.message}`);
    } else {
      addFeed(`error: ${error.message}`);
    }
  }
}

function closed(socket, event) {
  if (state.socket !== socket) return;
  for (const { reject } of state.pending.values()) reject(new Error("connection closed"));
  state.pending.clear();
  setConnection(`disconnected (${event.code})`, false);
  if (state.authFailed || !sessionStorage.getItem("ipx.token")) return;
  const delay = state.reconnectMs;
  state.reconnectMs = Math.min(state.reconnectMs * 2, RECONNECT_MAX_MS);
  setTimeout(connect, delay);
}

function setConnection(text, live) {
  const badge = $("#connection-status");
  badge.textContent = text;
  badge.className = "badge " + (live ? "badge-on" : "badge-off");
}

function request(method, params) {
  const id = String(state.nextId++);
  return new Promise((resolve, reject) => {
    state.pending.set(id, { resolve, reject });
    state.socket.send(JSON.stringify({ id, method, params: params || {} }));
  });
}

function receive(data) {
  const message = JSON.parse(data);
  if (message.id !== undefined && message.id !== null && state.pending.has(message.id)) {
    const { resolve, reject } = state.pending.get(message.id);
    state.pending.delete(message.id);
    if (message.status === 200) resolve(message.result);
    else {
      const error = new Error(`${message.status} ${message.error.code}: ${message.error.message}`);
      error.status = message.status;
      error.code = message.error.code;
      reject(error);
    }
    return;
  }
  if (message.channel) onPush(message);
}

// Instruments.

function newInstrument(view) {
  return {
    symbol: view.symbol,
    view,
    info: null,
    phase: view.phase,
    lastPrice: view.last_price,
    previousPrice: null,
    ticker: null,
    status: null,
    liquidity: null,
    seqs: {},
    bids: new Map(), // price text -> units
    asks: new Map(),
    points: [], // [ts_ms, price number]
    row: null,
    card: null,
  };
}

async function loadInstruments() {
  const listing = await request("instruments.list");
  const symbols = new Set();
  for (const view of listing.instruments) {
    symbols.add(view.symbol);
    const instrument = state.instruments.get(view.symbol) || addInstrument(view);
    instrument.phase = view.phase;
    instrument.seqs = {};
  }
  await Promise.all([...symbols].map((symbol) => subscribe(state.instruments.get(symbol))));
  render();
}

function addInstrument(view) {
  const instrument = newInstrument(view);
  state.instruments.set(view.symbol, instrument);
  buildRow(instrument);
  buildCard(instrument);
  $("#cancel-all-symbol").append(element("option", { value: view.symbol }, view.symbol));
  return instrument;
}

async function refreshInstruments() {
  // Shares issued while the page is open: no channel the page follows announces them.
  if (!state.account || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  let listing;
  try {
    listing = await request("instruments.list");
  } catch (error) {
    return; // The connection closed: the next logon lists everything again.
  }
  const added = listing.instruments
    .filter((view) => !state.instruments.has(view.symbol))
    .map(addInstrument);
  if (!added.length) return;
  addFeed(`listed since the page loaded: ${added.map((each) => each.symbol).join(", ")}`);
  await Promise.all(added.map(subscribe));
  for (const instrument of added) scheduleRender(instrument);
}

async function subscribe(instrument) {
  const symbol = instrument.symbol;
  try {
    instrument.info = await request("instrument.info", { symbol });
  } catch (error) {
    addFeed(`${symbol}: instrument.info failed: ${error.message}`);
  }
  await request("md.subscribe", { symbol, channels: MARKET_CHANNELS });
  // Its own request: a server without the channel refuses it (400) and the rest stands.
  try {
    try {
      await request("md.subscribe", { symbol, channels: [LIQUIDITY] });
    } catch (error) {
      await request("subscribe", { channel: LIQUIDITY, symbol }); // The one-channel spelling.
    }
    state.liquidityServed = true;
  } catch (error) {
    if (state.liquidityServed === null) state.liquidityServed = false;
    $("#liquidity-note").textContent =
      "The server does not publish the liquidity channel: spread computed from the ticker; " +
      "depth, turnover, yield and flags from the book and instrument info.";
  }
}

async function resubscribe(instrument, channel) {
  delete instrument.seqs[channel];
  const params = { symbol: instrument.symbol, channels: [channel] };
  try {
    await request("md.unsubscribe", params);
    await request("md.subscribe", params);
  } catch (error) {
    addFeed(`${instrument.symbol}: resubscribe to ${channel} failed: ${error.message}`);
  }
}

// Pushes, by channel and seq.

function onPush(message) {
  const instrument = state.instruments.get(message.symbol);
  if (!instrument || message.channel === "heartbeat") return;
  const channel = message.channel;
  const last = instrument.seqs[channel];
  if (message.type === "update") {
    if (last === undefined || message.seq <= last) return; // Before its snapshot, or seen.
    if (message.prev_seq !== last) { resubscribe(instrument, channel); return; }
  }
  instrument.seqs[channel] = message.seq;
  const handlers = {
    ticker: onTicker,
    "book.l2": onBook,
    trades: onTrades,
    status: onStatus,
    liquidity: onLiquidity,
  };
  const handler = handlers[channel];
  if (handler) handler(instrument, message);
  scheduleRender(instrument);
}

function onTicker(instrument, message) {
  if (message.last_price !== instrument.lastPrice && instrument.lastPrice !== null) {
    instrument.previousPrice = instrument.lastPrice;
  }
  instrument.ticker = message;
  instrument.lastPrice = message.last_price;
}

function onBook(instrument, message) {
  if (message.type === "snapshot") {
    instrument.bids.clear();
    instrument.asks.clear();
  }
  for (const [side, levels] of [[instrument.bids, message.bids], [instrument.asks, message.asks]]) {
    for (const [price, units] of levels) {
      if (units === 0) side.delete(price);
      else side.set(price, units);
    }
  }
}

function onTrades(instrument, message) {
  if (message.type === "snapshot") instrument.points = [];
  for (const trade of message.trades) {
    instrument.points.push([trade.ts_ns / 1e6, Number(trade.price)]);
  }
  if (instrument.points.length > PRICE_POINTS_MAX) {
    instrument.points.splice(0, instrument.points.length - PRICE_POINTS_MAX);
  }
}

function onStatus(instrument, message) {
  instrument.status = message;
  const before = instrument.phase;
  instrument.phase = message.phase;
  const symbol = instrument.symbol;
  if (message.event === "phase_changed" && message.phase !== before) {
    const reason = message.reason ? ` (${message.reason})` : "";
    const until = message.until_ts_ns ? ` until ${clockText(message.until_ts_ns / 1e6)}` : "";
    addFeed(`${symbol}: ${before} → ${message.phase}${reason}${until}`, message.ts_ns);
  } else if (message.event === "auction_uncrossed") {
    // auction_* tell the last uncross that traded; uncross_volume_units this one's own.
    const text = message.uncross_volume_units
      ? `auction uncrossed at ${message.auction_price}, ${message.uncross_volume_units} units`
      : "auction ended with no trade";
    addFeed(`${symbol}: ${text}`, message.ts_ns);
  }
}

function onLiquidity(instrument, message) {
  const previous = instrument.liquidity;
  instrument.liquidity = message;
  const period = message.last_distribution_period;
  if (period && previous && previous.last_distribution_period !== period) {
    addFeed(`${instrument.symbol}: royalty distribution for period ${period}`,
      message.last_distribution_ts_ns);
  } else if (period && !previous) {
    addFeed(`${instrument.symbol}: last royalty distribution: period ${period}`,
      message.last_distribution_ts_ns);
  }
}

function addFeed(text, tsNs) {
  const tsMs = tsNs ? tsNs / 1e6 : Date.now();
  const feed = $("#feed");
  feed.prepend(element("li", {}, element("time", {}, clockText(tsMs)), text));
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

// Rendering: a table row and a card per instrument, at most once per frame.

const dirty = new Set();
let frameRequested = false;

function scheduleRender(instrument) {
  dirty.add(instrument);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(() => {
      frameRequested = false;
      for (const each of dirty) renderInstrument(each);
      dirty.clear();
    });
  }
}

function render() {
  for (const instrument of state.instruments.values()) renderInstrument(instrument);
}

function buildRow(instrument) {
  const cells = {};
  const row = element("tr", { "data-symbol": instrument.symbol });
  const names = ["symbol", "phase", "last", "bid", "ask", "spread", "depth", "volume",
    "turnover", "yield", "expiry", "flags"];
  for (const name of names) {
    const numeric = !["symbol", "phase", "flags"].includes(name);
    cells[name] = element("td", { class: (numeric ? "num " : "") + name });
    row.append(cells[name]);
  }
  cells.symbol.append(element("strong", {}, instrument.symbol),
    element("span", { class: "title" }, instrument.view.title || ""));
  instrument.row = cells;
  $("#instruments tbody").append(row);
}

function buildCard(instrument) {
  const symbol = instrument.symbol;
  const phase = element("span", { class: "badge phase" });
  const priceCanvas = element("canvas", { "data-chart": "price" });
  const depthCanvas = element("canvas", { "data-chart": "depth" });
  const actions = element("div", { class: "actions operator-only" },
    actionButton("halt", symbol, "Halt"),
    actionButton("resume", symbol, "Resume"),
    actionButton("auction", symbol, "Start auction"));
  actions.hidden = state.role !== "operator";
  const card = element("article", { class: "card", "data-symbol": symbol },
    element("h3", {}, element("span", {}, `${symbol} · ${instrument.view.title || ""}`), phase),
    element("div", { class: "charts" },
      element("div", {}, element("div", { class: "chart-label" }, "Last price (trades)"),
        priceCanvas),
      element("div", {}, element("div", { class: "chart-label" }, "Depth (cumulative units)"),
        depthCanvas)),
    element("p", { class: "details" }),
    actions);
  const details = card.querySelector(".details");
  instrument.card = { card, phase, priceCanvas, depthCanvas, actions, details };
  $("#cards").append(card);
}

function actionButton(action, symbol, label) {
  const button = element("button", {
    type: "button", class: action === "resume" ? "" : "danger", "data-action": action,
    "data-symbol": symbol,
  }, label);
  button.addEventListener("click", () => operatorAction(action, symbol));
  return button;
}

function renderInstrument(instrument) {
  const cells = instrument.row;
  const ticker = instrument.ticker || {};
  const liquidity = instrument.liquidity;
  cells.phase.replaceChildren(
    element("span", { class: `badge phase-${instrument.phase}` }, instrument.phase));
  const last = instrument.lastPrice || "—";
  cells.last.textContent = last;
  cells.last.className = "num last" + priceDirection(instrument);
  cells.bid.textContent = ticker.best_bid ? `${ticker.best_bid} × ${ticker.best_bid_units}` : "—";
  cells.ask.textContent = ticker.best_ask ? `${ticker.best_ask} × ${ticker.best_ask_units}` : "—";
  // The spread always from the ticker, exactly as the liquidity channel defines it: the
  // channel's updates are throttled (and refreshed each second), so its quote can lag the
  // bid and ask shown next to it; its windowed figures are below each chart.
  const spread = spreadOf(instrument.phase, ticker.best_bid, ticker.best_ask);
  cells.spread.textContent = spread ? `${spread.text} (${spread.bps} bps)` : "—";
  const flags = [];
  if (liquidity) {
    const [bidUnits, askUnits] = liquidity.depth_50bps;
    cells.depth.textContent = `${bidUnits} / ${askUnits}`;
    cells.volume.textContent = `${liquidity.day_volume_units} (${liquidity.day_trades} tr)`;
    cells.turnover.textContent = percentText(liquidity.turnover_ppm, 1000000);
    cells.yield.textContent = percentText(liquidity.royalty_yield_bps, 10000);
    flags.push(...liquidity.flags);
  } else {
    cells.depth.textContent = `${sumUnits(instrument.bids)} / ${sumUnits(instrument.asks)} (book)`;
    cells.volume.textContent = ticker.volume_units === undefined ? "—"
      : `${ticker.volume_units} (${ticker.trade_count} tr)`;
    cells.turnover.textContent = "—";
    cells.yield.textContent = yieldFromInfo(instrument);
    if (!spread) flags.push("no_two_sided_quote"); // As the channel: halted or auction too.
    if (spread && spread.bps > WIDE_SPREAD_BPS) flags.push("wide_spread");
  }
  cells.flags.replaceChildren(...flags.map((flag) => element("span", { class: "flag" }, flag)));
  cells.expiry.textContent = durationText(secondsToExpiry(instrument));
  const card = instrument.card;
  card.phase.textContent = instrument.phase;
  card.phase.className = `badge phase phase-${instrument.phase}`;
  card.actions.hidden = state.role !== "operator";
  card.details.textContent = liquidityDetails(instrument);
  drawPrice(card.priceCanvas, instrument.points);
  drawDepth(card.depthCanvas, instrument.bids, instrument.asks);
}

function yieldFromInfo(instrument) {
  // TTM royalties / (total units x last price) in bps, rounded down, from instrument.info.
  const info = instrument.info;
  const last = decimal(instrument.lastPrice);
  if (!info || !last || last.value === 0n) return "—";
  const ttm = decimal(info.royalties.ttm_royalties);
  const bps = (ttm.value * 10n ** BigInt(last.digits) * 10000n)
    / (10n ** BigInt(ttm.digits) * BigInt(info.total_units) * last.value);
  return percentText(bps, 10000);
}

function liquidityDetails(instrument) {
  const liquidity = instrument.liquidity;
  if (!liquidity) return "";
  const bps = (value) => (value === null || value === undefined ? "—" : `${value} bps`);
  const digits = instrument.info ? (instrument.info.tick_size.split(".")[1] || "").length : 2;
  const parts = [
    `two-sided ${percentText(liquidity.two_sided_ppm, 1000000)} of ${liquidity.window_s} s`,
    `time-weighted spread ${bps(liquidity.time_weighted_spread_bps)}`,
    `effective spread ${bps(liquidity.effective_spread_bps)}`,
    `depth ±10/100 bps ${liquidity.depth_10bps.join("/")} · ${liquidity.depth_100bps.join("/")}`,
    `window ${liquidity.window_trades} trades, ${liquidity.window_volume_units} units`,
    `order/trade ${liquidity.order_to_trade_milli === null ? "—"
      : decimalText(BigInt(liquidity.order_to_trade_milli), 3)}`,
    `Amihud ${liquidity.amihud_ppb_per_million_minor ?? "—"} ppb per 1M minor`,
    `royalty TTM/unit ${liquidity.royalty_ttm_per_unit_minor === null ? "—"
      : decimalText(BigInt(liquidity.royalty_ttm_per_unit_minor), digits)}`,
  ];
  return parts.join(" · ");
}

async function refreshInfo() {
  // Without the liquidity channel, royalties (for the yield) come from instrument.info.
  if (state.liquidityServed !== false || !state.socket || state.socket.readyState !== 1) return;
  for (const instrument of state.instruments.values()) {
    try {
      instrument.info = await request("instrument.info", { symbol: instrument.symbol });
    } catch (error) {
      return;
    }
  }
}

function priceDirection(instrument) {
  if (!instrument.previousPrice || !instrument.lastPrice) return "";
  const before = decimal(instrument.previousPrice);
  const now = decimal(instrument.lastPrice);
  if (before.digits !== now.digits) return "";
  return now.value > before.value ? " up" : now.value < before.value ? " down" : "";
}

function sumUnits(side) {
  let total = 0;
  for (const units of side.values()) total += units;
  return total;
}

function secondsToExpiry(instrument) {
  // Counts down locally between liquidity updates, from the patent's expiry (00:00 UTC).
  let expiryMs = null;
  if (instrument.liquidity) expiryMs = instrument.liquidity.expiry_ts_ns / 1e6;
  else if (instrument.info) expiryMs = Date.parse(instrument.info.patent.expiry_date + "T00:00Z");
  if (expiryMs === null || Number.isNaN(expiryMs)) return null;
  return Math.floor((expiryMs - Date.now()) / 1000);
}

// Charts on canvas (no library).

function prepareCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  context.font = "11px system-ui, sans-serif";
  return { context, width, height };
}

function drawPrice(canvas, points) {
  const { context, width, height } = prepareCanvas(canvas);
  if (points.length === 0) { emptyChart(context, width, height, "no trades yet"); return; }
  const prices = points.map((point) => point[1]);
  let low = Math.min(...prices);
  let high = Math.max(...prices);
  if (high === low) { high += 0.5; low -= 0.5; }
  const first = points[0][0];
  const span = Math.max(points[points.length - 1][0] - first, 1);
  const pad = 34;
  const x = (t) => pad + ((t - first) / span) * (width - pad - 6);
  const y = (p) => 8 + (1 - (p - low) / (high - low)) * (height - 22);
  context.strokeStyle = "#2a3440";
  context.fillStyle = "#8a98a8";
  context.fillText(high.toFixed(2), 2, 12);
  context.fillText(low.toFixed(2), 2, height - 14);
  context.beginPath();
  context.strokeStyle = "#4c9aff";
  context.lineWidth = 1.5;
  points.forEach(([t, p], index) => {
    if (index === 0) context.moveTo(x(t), y(p));
    else context.lineTo(x(t), y(p));
  });
  if (points.length === 1) context.arc(x(first), y(prices[0]), 2, 0, 2 * Math.PI);
  context.stroke();
  context.fillStyle = "#8a98a8";
  context.fillText(clockText(first), pad, height - 2);
  const lastText = clockText(points[points.length - 1][0]);
  context.fillText(lastText, width - context.measureText(lastText).width - 4, height - 2);
}

function drawDepth(canvas, bids, asks) {
  const { context, width, height } = prepareCanvas(canvas);
  const sorted = (side, descending) => [...side.entries()]
    .map(([price, units]) => [Number(price), units])
    .sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]))
    .slice(0, DEPTH_LEVELS);
  const bidLevels = sorted(bids, true);
  const askLevels = sorted(asks, false);
  if (!bidLevels.length && !askLevels.length) {
    emptyChart(context, width, height, "empty book");
    return;
  }
  const cumulative = (levels) => {
    let total = 0;
    return levels.map(([price, units]) => [price, (total += units)]);
  };
  const bidSteps = cumulative(bidLevels);
  const askSteps = cumulative(askLevels);
  const allPrices = [...bidSteps, ...askSteps].map((step) => step[0]);
  let low = Math.min(...allPrices);
  let high = Math.max(...allPrices);
  const margin = Math.max((high - low) * 0.15, high * 0.002, 0.01);
  low -= margin;
  high += margin;
  const top = Math.max(1, ...bidSteps.map((s) => s[1]), ...askSteps.map((s) => s[1]));
  const x = (p) => 4 + ((p - low) / (high - low)) * (width - 8);
  const y = (u) => height - 14 - (u / top) * (height - 24);
  // Each side steps up away from the spread, and its total runs on to the chart's edge.
  const area = (steps, color, edge) => {
    if (!steps.length) return;
    context.beginPath();
    context.moveTo(x(steps[0][0]), y(0));
    let before = 0;
    for (const [price, total] of steps) {
      context.lineTo(x(price), y(before));
      context.lineTo(x(price), y(total));
      before = total;
    }
    context.lineTo(x(edge), y(before));
    context.lineTo(x(edge), y(0));
    context.closePath();
    context.fillStyle = color + "55";
    context.strokeStyle = color;
    context.fill();
    context.stroke();
  };
  area(bidSteps, "#3fb97c", low);
  area(askSteps, "#e5534b", high);
  context.fillStyle = "#8a98a8";
  context.fillText(low.toFixed(2), 4, height - 2);
  const highText = high.toFixed(2);
  context.fillText(highText, width - context.measureText(highText).width - 4, height - 2);
  context.fillText(`${top} u`, 4, 12);
}

function emptyChart(context, width, height, text) {
  context.fillStyle = "#8a98a8";
  context.fillText(text, width / 2 - context.measureText(text).width / 2, height / 2);
}

// Operator actions: confirm, send the op.* request, show the answer.

async function operatorAction(action, symbol) {
  let method;
  let params;
  let question;
  if (action === "halt") {
    [method, params, question] = ["op.halt", { symbol }, `Halt trading in ${symbol}?`];
  } else if (action === "resume") {
    [method, params, question] = ["op.resume", { symbol }, `Resume trading in ${symbol}?`];
  } else if (action === "auction") {
    const seconds = Math.max(1, Math.min(3600, Number($("#auction-seconds").value) || 60));
    method = "op.start_auction";
    params = { symbol, duration_ns: seconds * 1000000000 };
    question = `Start a ${seconds} s volatility auction in ${symbol}?`;
  } else {
    return;
  }
  await confirmAndSend(method, params, question);
}

async function confirmAndSend(method, params, question) {
  if (!window.confirm(question)) {
    showResult(`${method}: not sent (not confirmed)`, false);
    return;
  }
  try {
    const result = await request(method, params);
    showResult(`${method} ${JSON.stringify(params)}: done, ${resultText(result)}`, true);
    addFeed(`operator ${state.account}: ${method} ${JSON.stringify(params)} done`);
  } catch (error) {
    showResult(`${method} ${JSON.stringify(params)}: ${error.message}`, false);
  }
}

function resultText(result) {
  // The journaled event the command produced, in a few words.
  if (result && result.type === "phase_changed") {
    const reason = result.reason ? ` (${result.reason})` : "";
    return `phase ${result.phase}${reason}`;
  }
  return JSON.stringify(result);
}

function showResult(text, ok) {
  const result = $("#operator-result");
  result.textContent = text;
  result.className = ok ? "ok" : "error";
}

function setUp() {
  $("#logon-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem("ipx.token", token);
    $("#token-input").value = "";
    state.authFailed = false;
    connect();
  });
  $("#logout-button").addEventListener("click", () => {
    sessionStorage.removeItem("ipx.token");
    state.authFailed = true;
    if (state.socket) state.socket.close(1000, "log out");
    location.reload();
  });
  $("#cancel-all-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const accountId = $("#cancel-all-account").value.trim();
    const symbol = $("#cancel-all-symbol").value;
    if (!accountId) return;
    const params = symbol ? { account_id: accountId, symbol } : { account_id: accountId };
    const where = symbol ? ` in ${symbol}` : "";
    confirmAndSend("op.cancel_all", params, `Cancel every open order of ${accountId}${where}?`);
  });
  // The expiry countdown ticks between pushes.
  setInterval(render, 1000);
  setInterval(refreshInfo, INFO_REFRESH_MS);
  setInterval(refreshInstruments, INSTRUMENTS_REFRESH_MS);
  connect();
}

document.addEventListener("DOMContentLoaded", setUp);
