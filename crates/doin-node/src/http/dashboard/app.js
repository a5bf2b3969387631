// DOIN node dashboard: plain JavaScript, no dependencies, served by the node itself.
//
// Start-up reads only bounded pages (/status, /domains, the last 20 headers, the newest
// verdicts of each domain), so the first render does not depend on the chain's length.
// Then /events (server-sent events) keeps everything current: a `status` event per block
// refreshes the cards, a `block` event adds the block, its verdicts and the rewards.
//
// Hooks for tests and the benchmark, on <html>:
//   data-first-render-ms  performance.now() when the first full render was painted
//   data-initial-height   the height that first render showed
//   data-live-updates     blocks applied from /events since then
//   data-errors           script errors caught (0 when all is well)
//   data-stream           "closed" once ?live_blocks=N blocks were applied and /events closed
// `?live_blocks=N` closes the event stream after N live blocks: headless Chromium's
// --virtual-time-budget waits for open requests, so a test's page must end its stream to
// let the browser finish. Without it the page stays live for as long as it is open.
'use strict';

(() => {
  /** Rows kept in the recent blocks table. */
  const MAX_BLOCK_ROWS = 20;
  /** Entries kept in the event log. */
  const MAX_EVENTS = 60;
  /** Verdicts per domain fetched at start and kept for the chart. */
  const HISTORY_LIMIT = 500;
  const UNITS_PER_DOIN = 1e8;
  const SVG = 'http://www.w3.org/2000/svg';

  const root = document.documentElement;
  const $ = (id) => document.getElementById(id);

  const state = {
    status: null,
    /** domain id -> { panel, entries: [{height, performance, verdict}], accepted, rejected, complete } */
    domains: new Map(),
    lastBlock: -1,
    sessionRewards: 0,
    liveUpdates: 0,
    errors: 0,
    ready: false,
    /** Events that arrived before the first render, applied right after it. */
    early: [],
  };

  // --- errors: shown on the page, counted for tests, and left in the console ---

  function reportError(message) {
    state.errors += 1;
    root.dataset.errors = String(state.errors);
    const box = $('errors');
    if (box) {
      box.hidden = false;
      box.textContent = message;
    }
  }
  window.addEventListener('error', (e) => reportError(`script error: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => reportError(`unhandled: ${e.reason}`));
  root.dataset.errors = '0';

  // --- formatting ---

  /** An amount in base units as DOIN, rounded for reading (without the unit). */
  function doinNumber(units) {
    if (typeof units !== 'number') return '–';
    const v = units / UNITS_PER_DOIN;
    const digits = Math.abs(v) >= 1000 ? 2 : Math.abs(v) >= 1 ? 4 : 8;
    return v.toLocaleString('en-US', { maximumFractionDigits: digits });
  }
  function doin(units) {
    return typeof units === 'number' ? `${doinNumber(units)} DOIN` : '–';
  }
  function perf(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toFixed(a >= 100 ? 2 : 4);
  }
  function short(hex) {
    return typeof hex === 'string' ? hex.slice(0, 12) : '–';
  }
  function clock(ms) {
    return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
  }
  function duration(ms) {
    if (typeof ms !== 'number') return '–';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }
  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  // --- HTTP ---

  async function getJSON(path) {
    const resp = await fetch(path, { headers: { accept: 'application/json' } });
    if (!resp.ok) {
      let detail = '';
      try {
        detail = (await resp.json()).message || '';
      } catch (_) {
        // not JSON: the status says enough
      }
      throw new Error(`GET ${path}: HTTP ${resp.status} ${detail}`);
    }
    return resp.json();
  }

  // --- cards ---

  function renderStatus(s) {
    state.status = s;
    const height = $('height');
    height.textContent = String(s.chain_height);
    height.dataset.value = String(s.chain_height);
    setText('tip', short(s.tip_hash));
    setText('finalized', String(s.finalized_height));
    setText('peers', String(s.peers));
    setText('peer-id', `peer ${short(s.peer_id)}`);
    // Rounded on the card; the exact amount is in the tooltip.
    setText('balance', doinNumber(s.balance));
    $('balance').title = s.balance_display || '';
    setText('supply', doinNumber(s.total_supply));
    $('supply').title = s.total_supply_display || '';
    setText('burned', doin(s.burned));
    setText('mempool', String(s.mempool_size));
    setText('base-fee', `${s.base_fee} units`);
    setText('block-time', duration(s.ema_block_time_ms));
    setText('target-time', duration(s.target_block_time_ms));
    setText('difficulty', String(s.difficulty));
    setText('node-label', s.node_label || '');
    setText('chain-id', `chain ${s.chain_id}`);
    setText('account', s.account);
    setText('version', s.version);
    setText('uptime', duration(s.uptime_ms));
    renderTipAge();
    for (const d of s.domains || []) {
      const dom = state.domains.get(d.domain_id);
      if (!dom) continue;
      dom.rounds = d.rounds;
      dom.converged = d.converged;
      if (typeof d.target_performance === 'number') dom.target = d.target_performance;
      if (typeof d.best_performance === 'number') dom.best = d.best_performance;
      renderDomainStats(dom);
    }
  }

  function renderTipAge() {
    if (!state.status) return;
    const age = Date.now() - state.status.tip_time_ms;
    setText('tip-age', age >= 0 ? `${duration(age)} ago` : '');
  }

  // --- domains ---

  function domainPanel(id) {
    const tpl = $('domain-template');
    const panel = tpl.content.firstElementChild.cloneNode(true);
    panel.dataset.domain = id;
    panel.querySelector('.domain-name').textContent = id;
    $('domains').appendChild(panel);
    return panel;
  }

  function addDomain(entry, history) {
    const local = entry.local;
    const dom = {
      id: entry.domain_id,
      panel: domainPanel(entry.domain_id),
      entries: [],
      accepted: 0,
      rejected: 0,
      complete: history.next_before === null,
      best: history.best_performance,
      target: history.target_performance,
      baseline: history.baseline_performance,
      inFlight: entry.pending_optimae,
      rounds: local ? local.rounds : null,
      converged: local ? local.converged : false,
      role: local ? [local.optimize && 'optimize', local.evaluate && 'evaluate'].filter(Boolean).join(' + ') || 'follow' : 'not joined',
      tip: history.tip_height,
      /** Verdicts up to this height came with the history page. */
      historyTip: history.tip_height,
    };
    for (const e of history.entries) addVerdict(dom, e.height, e.verdict, e.performance);
    state.domains.set(dom.id, dom);
    renderDomainStats(dom);
    renderChart(dom);
  }

  function addVerdict(dom, height, verdict, performance) {
    if (verdict === 'accepted') dom.accepted += 1;
    else dom.rejected += 1;
    if (typeof performance === 'number' && Number.isFinite(performance)) {
      dom.entries.push({ height, performance, verdict });
      if (dom.entries.length > HISTORY_LIMIT * 2) dom.entries.splice(0, dom.entries.length - HISTORY_LIMIT * 2);
    }
  }

  function renderDomainStats(dom) {
    const p = dom.panel;
    const plus = dom.complete ? '' : '+';
    p.querySelector('.domain-role').textContent = dom.role;
    p.querySelector('.domain-converged').hidden = !dom.converged;
    p.querySelector('.domain-best').textContent = perf(dom.best);
    p.querySelector('.domain-target').textContent = perf(dom.target);
    p.querySelector('.domain-accepted').textContent = `${dom.accepted}${plus}`;
    p.querySelector('.domain-rejected').textContent = `${dom.rejected}${plus}`;
    p.querySelector('.domain-inflight').textContent = typeof dom.inFlight === 'number' ? String(dom.inFlight) : '–';
    p.querySelector('.domain-rounds').textContent = typeof dom.rounds === 'number' ? String(dom.rounds) : '–';
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Best verified performance over height as a step line, rejected verdicts as dots, the
   * target as a dashed line. Plain SVG, redrawn whole (a few hundred elements at most). */
  function renderChart(dom) {
    const svg = dom.panel.querySelector('.chart');
    // Drawn in CSS pixels at the chart's current width, so text is never stretched.
    const W = Math.max(320, Math.round(svg.clientWidth || 640));
    const H = 220;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const L = 64;
    const R = 12;
    const T = 12;
    const B = 24;
    const frag = document.createDocumentFragment();
    const accepted = dom.entries.filter((e) => e.verdict === 'accepted');
    if (accepted.length === 0) {
      frag.appendChild(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'no accepted optimae yet'));
      svg.replaceChildren(frag);
      return;
    }
    const tip = Math.max(dom.tip || 0, accepted[accepted.length - 1].height);
    const x0 = accepted[0].height;
    const x1 = Math.max(tip, x0 + 1);
    const ys = accepted.map((e) => e.performance);
    if (typeof dom.target === 'number') ys.push(dom.target);
    let y0 = Math.min(...ys);
    let y1 = Math.max(...ys);
    if (y1 - y0 < 1e-9) {
      y0 -= 1;
      y1 += 1;
    }
    const pad = (y1 - y0) * 0.08;
    y0 -= pad;
    y1 += pad;
    const sx = (h) => L + ((h - x0) / (x1 - x0)) * (W - L - R);
    const sy = (v) => T + (1 - (Math.min(Math.max(v, y0), y1) - y0) / (y1 - y0)) * (H - T - B);
    for (let i = 0; i <= 4; i += 1) {
      const v = y0 + ((y1 - y0) * i) / 4;
      frag.appendChild(el('line', { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: 'grid' }));
      frag.appendChild(el('text', { x: L - 6, y: sy(v) + 4, 'text-anchor': 'end', class: 'axis' }, perf(v)));
    }
    frag.appendChild(el('text', { x: L, y: H - 6, class: 'axis' }, `#${x0}`));
    frag.appendChild(el('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'axis' }, `#${x1}`));
    if (typeof dom.target === 'number') {
      frag.appendChild(el('line', { x1: L, x2: W - R, y1: sy(dom.target), y2: sy(dom.target), class: 'target' }));
      frag.appendChild(el('text', { x: W - R - 4, y: sy(dom.target) - 5, 'text-anchor': 'end', class: 'target-label' }, `target ${perf(dom.target)}`));
    }
    for (const e of dom.entries) {
      if (e.verdict !== 'accepted' && e.height >= x0) {
        frag.appendChild(el('circle', { cx: sx(e.height), cy: sy(e.performance), r: 2.5, class: 'rejected' }));
      }
    }
    let d = `M${sx(accepted[0].height).toFixed(1)},${sy(accepted[0].performance).toFixed(1)}`;
    for (let i = 1; i < accepted.length; i += 1) {
      d += `H${sx(accepted[i].height).toFixed(1)}V${sy(accepted[i].performance).toFixed(1)}`;
    }
    d += `H${sx(x1).toFixed(1)}`;
    frag.appendChild(el('path', { d, class: 'best' }));
    for (const e of accepted) {
      const dot = el('circle', { cx: sx(e.height), cy: sy(e.performance), r: 3, class: 'point' });
      dot.appendChild(el('title', {}, `#${e.height}: ${perf(e.performance)}`));
      frag.appendChild(dot);
    }
    svg.replaceChildren(frag);
  }

  // --- blocks and events ---

  function blockRow(b, isNew) {
    const tr = document.createElement('tr');
    if (isNew) tr.className = 'new';
    const cells = [
      String(b.height),
      clock(b.time_ms),
      short(b.hash),
      String(b.tx_count),
      String(b.work),
      doin(b.minted),
      typeof b.my_reward === 'number' ? doin(b.my_reward) : '–',
    ];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }

  function addBlockRow(b, isNew) {
    const body = $('blocks').tBodies[0];
    body.insertBefore(blockRow(b, isNew), body.firstChild);
    while (body.rows.length > MAX_BLOCK_ROWS) body.deleteRow(body.rows.length - 1);
  }

  function logEvent(text, cls) {
    const list = $('events');
    const li = document.createElement('li');
    if (cls) li.className = cls;
    const time = document.createElement('time');
    time.textContent = clock(Date.now());
    li.appendChild(time);
    li.appendChild(document.createTextNode(text));
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
  }

  function applyBlock(b) {
    if (b.height <= state.lastBlock) return;
    state.lastBlock = b.height;
    // The block moves the height now; its `status` (right behind it) fills in the rest.
    const height = $('height');
    if (b.height > Number(height.dataset.value || -1)) {
      height.textContent = String(b.height);
      height.dataset.value = String(b.height);
      setText('tip', short(b.hash));
    }
    addBlockRow(b, true);
    if (b.my_reward > 0) {
      state.sessionRewards += b.my_reward;
      setText('last-reward', doin(b.my_reward));
      setText('session-rewards', doin(state.sessionRewards));
    }
    const reward = b.my_reward > 0 ? `, ${doin(b.my_reward)} to this node` : '';
    logEvent(`block #${b.height}: ${b.tx_count} txs, minted ${doin(b.minted)}${reward}`);
    const touched = new Set();
    for (const v of b.verdicts) {
      const dom = state.domains.get(v.domain);
      if (dom && b.height > dom.historyTip) {
        addVerdict(dom, b.height, v.verdict, v.median);
        if (v.verdict === 'accepted') dom.best = v.median;
        touched.add(dom);
      }
      if (v.verdict === 'accepted') {
        logEvent(`${v.domain}: optimae ${short(v.commitment)} accepted at ${perf(v.median)} (+${perf(v.credit)}, ${v.votes} votes)`, 'accepted');
      } else {
        logEvent(`${v.domain}: optimae ${short(v.commitment)} ${v.verdict.replace('_', ' ')} (${v.reason || ''})`, 'rejected');
      }
    }
    if (b.expired > 0) logEvent(`${b.expired} commitment(s) expired unrevealed`, 'warn');
    for (const f of b.in_flight || []) {
      const dom = state.domains.get(f.domain);
      if (dom) {
        dom.inFlight = f.committed + f.revealed;
        touched.add(dom);
      }
    }
    for (const dom of state.domains.values()) {
      dom.tip = b.height;
      renderDomainStats(dom);
      // Redraw when a verdict moved the line; otherwise every 10 blocks to extend it.
      if (touched.has(dom) || b.height % 10 === 0) renderChart(dom);
    }
    state.liveUpdates += 1;
    root.dataset.liveUpdates = String(state.liveUpdates);
    if (state.liveUpdates >= liveLimit && state.source) {
      state.source.close();
      root.dataset.stream = 'closed';
      $('conn').textContent = 'closed';
      $('conn').className = 'conn conn-wait';
    }
  }

  function onEvent(kind, data) {
    if (!state.ready) {
      state.early.push([kind, data]);
      return;
    }
    if (kind === 'status') {
      // A status can only move forward: an older one (raced by a reconnect) is ignored.
      if (!state.status || data.chain_height >= state.status.chain_height) renderStatus(data);
    } else if (kind === 'block') {
      applyBlock(data);
    } else if (kind === 'reorg') {
      logEvent(`reorganized: ${data.depth} blocks above height ${data.fork_height} replaced`, 'warn');
      // The next status may show a lower height (a heavier but shorter branch).
      state.status = null;
    } else if (kind === 'lagged') {
      logEvent(`fell behind: ${data.skipped} events skipped`, 'warn');
    }
  }

  const liveLimit = Number.parseInt(new URLSearchParams(window.location.search).get('live_blocks'), 10);

  function connect() {
    const conn = $('conn');
    const source = new EventSource('/events');
    state.source = source;
    const handle = (kind) => (msg) => {
      try {
        onEvent(kind, JSON.parse(msg.data));
      } catch (err) {
        reportError(`bad ${kind} event: ${err}`);
      }
    };
    source.addEventListener('status', handle('status'));
    source.addEventListener('block', handle('block'));
    source.addEventListener('reorg', handle('reorg'));
    source.addEventListener('lagged', handle('lagged'));
    source.addEventListener('open', () => {
      conn.textContent = 'live';
      conn.className = 'conn conn-live';
    });
    source.addEventListener('error', () => {
      // EventSource reconnects by itself (after the `retry` the node sends).
      conn.textContent = source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting';
      conn.className = 'conn conn-down';
    });
  }

  async function start() {
    // Subscribe first, so nothing mined while the pages load is missed.
    connect();
    const [status, domains, blocks] = await Promise.all([
      getJSON('/status'),
      getJSON('/domains'),
      getJSON('/chain/blocks'),
    ]);
    const histories = await Promise.all(
      domains.domains.map((d) =>
        getJSON(`/domains/${encodeURIComponent(d.domain_id)}/history?verdicts=all&limit=${HISTORY_LIMIT}`),
      ),
    );
    domains.domains.forEach((d, i) => addDomain(d, histories[i]));
    for (const b of blocks.blocks) {
      addBlockRow(
        {
          height: b.header.height,
          time_ms: b.header.timestamp_ms,
          hash: b.hash,
          tx_count: b.tx_count,
          work: b.header.work,
          minted: b.header.minted,
        },
        false,
      );
      state.lastBlock = Math.max(state.lastBlock, b.header.height);
    }
    renderStatus(status);
    root.dataset.initialHeight = String(status.chain_height);
    state.ready = true;
    for (const [kind, data] of state.early.splice(0)) onEvent(kind, data);
    // The first render is done once the browser has painted it.
    requestAnimationFrame(() => {
      const ms = performance.now();
      root.dataset.firstRenderMs = ms.toFixed(1);
      setText('first-render', `${Math.round(ms)} ms`);
    });
    setInterval(renderTipAge, 1000);
    let resizing = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => state.domains.forEach(renderChart), 150);
    });
  }

  start().catch((err) => {
    console.error(err);
    reportError(`dashboard failed to load: ${err.message}`);
  });
})();
