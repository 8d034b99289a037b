// The refgate console: one page, a hash router, and the public JSON API.
// The token lives in sessionStorage only and travels in the Authorization
// header, never in a URL. Every element is built with textContent, never
// innerHTML, so nothing the API returns can become markup.
import qrcode from './vendor/qrcode-generator-2.0.4.mjs';

const TOKEN_KEY = 'refgate.token';
const PROGRAM_KEY = 'refgate.program';

// ---------------------------------------------------------------- DOM

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'text') {
      el.textContent = v;
    } else if (k in el && typeof v !== 'string') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

let uid = 0;
// field is a label and its control, tied by id.
function field(label, control, hint) {
  control.id = control.id || 'f' + (++uid);
  const kids = [h('label', {for: control.id, text: label}), control];
  if (hint) {
    const hid = control.id + '-hint';
    control.setAttribute('aria-describedby', hid);
    kids.push(h('small', {id: hid, class: 'hint', text: hint}));
  }
  return h('div', {class: 'field'}, kids);
}

function input(name, props) {
  return h('input', {name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...props});
}

function select(name, options, value) {
  const s = h('select', {name});
  setOptions(s, options, value);
  return s;
}

function setOptions(s, options, value) {
  s.replaceChildren(...options.map(o => {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    return h('option', {value: v, text: label, selected: v === value});
  }));
}

function button(text, onclick, props) {
  return h('button', {type: 'button', on: {click: onclick}, ...props}, text);
}

// errorBox is where a form's API errors go: next to the form, announced.
function errorBox() {
  return h('p', {class: 'error', role: 'alert'});
}

function showError(box, err) {
  box.textContent = describe(err);
}

function describe(err) {
  if (err instanceof APIError) {
    return `${err.message} (${err.status} ${err.code})`;
  }
  return String(err && err.message || err);
}

let statusTimer;
function announce(text) {
  const s = document.getElementById('status');
  s.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { s.textContent = ''; }, 6000);
}

function table(caption, headers, rows) {
  const t = h('table', {class: 'stack'},
    h('caption', {text: caption}),
    h('thead', {}, h('tr', {}, headers.map(c => h('th', {scope: 'col', text: c})))),
    h('tbody', {}, rows));
  labelCells(t);
  return h('div', {class: 'scroll', tabindex: '0', role: 'region', 'aria-label': caption}, t);
}

// labelCells gives every body cell its column's name, which a phone's
// narrow screen shows before the value (app.css stacks the rows there).
function labelCells(t) {
  const names = Array.from(t.tHead.rows[0].cells, c => c.textContent);
  for (const row of t.tBodies[0].rows) {
    Array.from(row.cells).forEach((c, i) => { if (names[i]) c.dataset.label = names[i]; });
  }
}

function empty(text) {
  return h('p', {class: 'empty', text});
}

// ---------------------------------------------------------------- formats

const fractionDigits = new Map();
function minorDigits(currency) {
  if (!fractionDigits.has(currency)) {
    let d = 2;
    try {
      d = new Intl.NumberFormat('en', {style: 'currency', currency}).resolvedOptions().maximumFractionDigits;
    } catch { /* an unknown code: two digits */ }
    fractionDigits.set(currency, d);
  }
  return fractionDigits.get(currency);
}

// money shows minor units as the currency's major unit, exactly: integer
// arithmetic on the digits, no binary floats.
function money(minor, currency) {
  const d = minorDigits(currency || '');
  const neg = minor < 0;
  let s = String(Math.abs(minor));
  if (d > 0) {
    s = s.padStart(d + 1, '0');
    s = s.slice(0, -d) + '.' + s.slice(-d);
  }
  return (neg ? '−' : '') + s + (currency ? ' ' + currency : '');
}

function when(t) {
  if (!t) return '';
  const d = new Date(t);
  return isNaN(d) ? t : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/:\d\dZ$/, 'Z');
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

function list(s) {
  return s.split(/[\s,]+/).map(x => x.trim()).filter(Boolean);
}

function num(v) {
  return v === '' || v === undefined ? undefined : Number(v);
}

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function path(p, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? p + '?' + s : p;
}

// call sends one API request with the token. JSON answers are parsed;
// with accept (text/csv) the body comes back as a Blob. An error answer is
// an APIError with the API's code and message.
async function call(method, p, {body, accept, tok} = {}) {
  const headers = {Authorization: 'Bearer ' + (tok || token())};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accept) headers.Accept = accept;
  let resp;
  try {
    resp = await fetch(p, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit'});
  } catch (e) {
    throw new APIError(0, 'network', 'refgate did not answer: ' + e.message);
  }
  if (resp.status === 204) return null;
  if (resp.ok && accept) return resp.blob();
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    const err = new APIError(resp.status, e.code || 'http_' + resp.status, e.message || resp.statusText);
    if (resp.status === 401 && !tok) signedOut('The token was refused (expired or revoked?): sign in again.');
    throw err;
  }
  return data;
}

// download fetches a CSV with the token and saves it through a Blob URL:
// the token never appears in a URL a browser could log or share.
async function download(p, filename) {
  const blob = await call('GET', p, {accept: 'text/csv'});
  const url = URL.createObjectURL(blob);
  const a = h('a', {href: url, download: filename, hidden: true});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  announce(`Downloaded ${filename}`);
}

// ---------------------------------------------------------------- session

const session = {role: '', promoter: '', programs: []};

// whoIs tells the admin token from a promoter token: a promoter route
// answers a promoter token and refuses (403) any other known token.
async function whoIs(tok) {
  try {
    const links = await call('GET', path('/v1/promoter/links', {limit: 1000}), {tok});
    return {role: 'promoter', links: links.items};
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  try {
    await call('GET', path('/v1/admin/programs', {limit: 1}), {tok});
    return {role: 'admin'};
  } catch (e) {
    if (e.status === 403) {
      throw new Error('This token may not use the console: sign in with the admin token or a promoter token.');
    }
    throw e;
  }
}

async function signIn(tok) {
  const who = await whoIs(tok);
  programCache = null;
  sessionStorage.setItem(TOKEN_KEY, tok);
  session.role = who.role;
  if (who.role === 'promoter') {
    session.promoter = who.links.length ? who.links[0].promoter : '';
    session.programs = [...new Set(who.links.map(l => l.program))].sort();
  }
  showNav();
}

function signedOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(PROGRAM_KEY);
  session.role = '';
  session.promoter = '';
  session.programs = [];
  // Nothing read with one token may be shown to the next.
  programCache = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  document.getElementById('view').replaceChildren();
  document.getElementById('signin').hidden = false;
  document.getElementById('signin-error').textContent = message || '';
  document.getElementById('token').value = '';
  document.getElementById('token').focus();
}

function showNav() {
  const nav = document.getElementById('nav');
  const pages = Object.entries(routes).filter(([, r]) => r.role === session.role);
  nav.replaceChildren(h('ul', {}, pages.map(([hash, r]) => h('li', {}, h('a', {href: '#' + hash, text: r.title})))));
  nav.hidden = false;
  document.getElementById('signout').hidden = false;
  document.getElementById('signin').hidden = true;
  document.getElementById('who').textContent = session.role === 'admin' ? 'Operator'
    : 'Promoter' + (session.promoter ? ' ' + session.promoter : '');
}

// ---------------------------------------------------------------- shared pieces

let programCache = null;
// pageRole is whose page is rendering: an admin page lists the programs
// through the admin API (and so is refused a promoter token), a promoter
// page offers the programs of the promoter's links.
let pageRole = '';
async function programIDs() {
  if (pageRole === 'promoter') return session.programs;
  if (!programCache) {
    const out = [];
    let cursor = '';
    do {
      const page = await call('GET', path('/v1/admin/programs', {limit: 1000, cursor}));
      out.push(...page.items);
      cursor = page.next_cursor || '';
    } while (cursor);
    programCache = out;
  }
  return programCache.map(p => p.id);
}

function currentProgram(ids) {
  const saved = sessionStorage.getItem(PROGRAM_KEY);
  return ids.includes(saved) ? saved : ids[0] || '';
}

// programPicker is a select of the programs (an input if there are none to
// list), remembered for the tab.
async function programPicker(label = 'Program') {
  const ids = await programIDs();
  let control;
  if (ids.length) {
    control = select('program', ids, currentProgram(ids));
  } else {
    control = input('program', {required: true});
  }
  control.addEventListener('change', () => sessionStorage.setItem(PROGRAM_KEY, control.value));
  return {control, el: field(label, control)};
}

// pager renders a list page by page: load(cursor) answers {items,
// next_cursor}; row(item) makes a table row.
async function pager(into, caption, headers, load, row, none) {
  const body = h('tbody');
  const more = button('Show more', async () => {
    more.disabled = true;
    try {
      await next();
    } catch (e) {
      showError(err, e);
    }
  }, {hidden: true, class: 'quiet'});
  const err = errorBox();
  let cursor = '';
  let count = 0;
  const tbl = table(caption, headers, []);
  tbl.querySelector('table').replaceChild(body, tbl.querySelector('tbody'));
  async function next() {
    const page = await load(cursor);
    for (const it of page.items) body.append(row(it));
    labelCells(tbl.querySelector('table'));
    count += page.items.length;
    cursor = page.next_cursor || '';
    more.hidden = !cursor;
    more.disabled = false;
  }
  await next();
  into.replaceChildren(count ? tbl : empty(none), more, err);
}

function qrImage(url, label) {
  const qr = qrcode(0, 'M');
  qr.addData(url);
  qr.make();
  const src = qr.createDataURL(6, 4);
  return h('figure', {class: 'qr'},
    h('img', {src, alt: 'QR code of ' + url, width: qr.getModuleCount() * 6 + 8, height: qr.getModuleCount() * 6 + 8}),
    h('figcaption', {}, label + ' ', h('a', {href: src, download: label + '.gif', text: 'Save image'})));
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (plain http on a LAN address): the old way.
    const ta = h('textarea', {class: 'offscreen', readonly: true});
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  announce('Copied ' + text);
}

// linkTools are the buttons a link's URL gets: copy, QR, share.
function linkTools(link, qrSlot) {
  const tools = [
    button('Copy URL', () => copyText(link.url), {'aria-label': 'Copy URL of ' + link.code}),
    button('QR code', ev => {
      const shown = qrSlot.firstChild;
      qrSlot.replaceChildren(...(shown ? [] : [qrImage(link.url, link.code)]));
      ev.currentTarget.setAttribute('aria-expanded', String(!shown));
    }, {'aria-label': 'QR code of ' + link.code, 'aria-expanded': 'false'}),
  ];
  if (navigator.share) {
    tools.push(button('Share', () => navigator.share({url: link.url}).catch(() => {}), {'aria-label': 'Share ' + link.code}));
  }
  return h('span', {class: 'tools'}, tools);
}

function linkState(l) {
  const parts = [l.status || 'active'];
  if (l.expires_at) parts.push((new Date(l.expires_at) <= new Date() ? 'expired ' : 'expires ') + when(l.expires_at));
  return parts.join(', ');
}

// ---------------------------------------------------------------- reports

const OUTCOMES = ['attributed', 'bot', 'suspect', 'self_click', 'rate_limited', 'inactive', 'gpc'];
const COLORS = ['#1f5fbf', '#b3261e', '#8a5a00', '#6b3fa0', '#00695c', '#5f6368', '#c2185b'];

function sum(o) {
  return Object.values(o || {}).reduce((a, b) => a + b, 0);
}

function bound(b) {
  return (b.created || 0) + (b.renewed || 0) + (b.overridden || 0);
}

function xOf(date) {
  return Date.UTC(+date.slice(0, 4), +date.slice(5, 7) - 1, date.length > 7 ? +date.slice(8, 10) : 1) / 1000;
}

// WHOLE are the y axes' tick steps: every series counts whole things
// (clicks, binds, minor units), so no tick falls between two.
const WHOLE = [];
for (let p = 1; p <= 1e15; p *= 10) WHOLE.push(p, 2 * p, 5 * p);

const charts = new Set();
window.addEventListener('resize', () => {
  for (const c of charts) {
    if (!c.root.isConnected) {
      charts.delete(c);
      continue;
    }
    c.setSize({width: chartWidth(c.root.parentNode), height: 220});
  }
});

function chartWidth(el) {
  return Math.max(280, Math.min(1400, (el.clientWidth || 320) - 16));
}

function chart(into, title, series, xs, monthly) {
  const uPlot = globalThis.uPlot;
  const box = h('figure', {class: 'chart', role: 'img',
    'aria-label': title + ': ' + series.map(s => `${s.label} ${sum(s.values)}`).join(', ')});
  const cap = h('figcaption', {text: title});
  box.append(cap);
  into.append(box);
  const opts = {
    width: chartWidth(into),
    height: 220,
    scales: {x: {time: true}},
    // Ticks far enough apart for their labels: MM-DD by day, YYYY-MM by
    // month; the y axis wide enough for amounts in minor units.
    axes: [{space: 70, values: (u, ticks) => ticks.map(t => new Date(t * 1000).toISOString().slice(monthly ? 0 : 5, monthly ? 7 : 10))},
      {size: 80, incrs: WHOLE, values: (u, ticks) => ticks.map(v => v.toLocaleString('en'))}],
    series: [{label: monthly ? 'Month' : 'Day', value: (u, v) => v == null ? '' : new Date(v * 1000).toISOString().slice(0, monthly ? 7 : 10)},
      ...series.map((s, i) => ({label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2,
        points: {show: true, size: 5}}))],
  };
  const u = new uPlot(opts, [xs, ...series.map(s => s.values)], box);
  charts.add(u);
}

// report draws a series as charts and a table.
function showReport(into, series, monthly) {
  into.replaceChildren();
  if (!series.length) {
    into.append(empty('No days in that range.'));
    return;
  }
  const xs = series.map(r => xOf(r.date));
  const outcomes = OUTCOMES.filter(o => o === 'attributed' || series.some(r => r.clicks[o]));
  const box = h('div', {class: 'charts'});
  into.append(box);
  chart(box, 'Clicks by outcome', outcomes.map(o => ({label: o, values: series.map(r => r.clicks[o] || 0)})), xs, monthly);
  chart(box, 'Visitors, binds and conversions', [
    {label: 'visitors', values: series.map(r => r.visitors)},
    {label: 'binds', values: series.map(r => bound(r.binds))},
    {label: 'binds rejected', values: series.map(r => r.binds.rejected || 0)},
    {label: 'conversions', values: series.map(r => r.conversions.attributed || 0)},
  ], xs, monthly);
  chart(box, 'Commission, cash and refunds (minor units)', [
    {label: 'commission', values: series.map(r => r.commission)},
    {label: 'cash', values: series.map(r => r.cash)},
    {label: 'refunded', values: series.map(r => r.refunded)},
  ], xs, monthly);
  const rows = series.map(r => h('tr', {},
    h('th', {scope: 'row', text: r.date}),
    h('td', {class: 'n', text: r.clicks.attributed || 0}),
    h('td', {class: 'n', text: sum(r.clicks)}),
    h('td', {class: 'n', text: r.visitors}),
    h('td', {class: 'n', text: bound(r.binds)}),
    h('td', {class: 'n', text: r.conversions.attributed || 0}),
    h('td', {class: 'n', text: r.cash}),
    h('td', {class: 'n', text: r.commission}),
    h('td', {class: 'n', text: r.refunded})));
  // The numbers behind the charts, for screen readers and for copying;
  // folded on a phone's narrow screen, where the charts come first.
  into.append(h('details', {class: 'numbers', open: window.innerWidth >= 640},
    h('summary', {text: 'The numbers as a table'}),
    table('The numbers (cash, commission and refunds in minor units)',
      [monthly ? 'Month' : 'Day', 'Attributed clicks', 'All clicks', 'Visitors', 'Binds', 'Conversions', 'Cash', 'Commission', 'Refunded'], rows)));
}

async function reportPage(view, admin) {
  const prog = await programPicker();
  const scope = select('scope', admin ? [['program', 'the whole program'], ['promoter', 'one promoter'], ['link', 'one link']]
    : [['promoter', 'all my links'], ['link', 'one link']]);
  const id = input('id', {placeholder: 'promoter id or link code'});
  const idField = field('Promoter or link', id);
  idField.hidden = true;
  scope.addEventListener('change', () => { idField.hidden = !['promoter', 'link'].includes(scope.value) || (!admin && scope.value === 'promoter'); });
  const today = new Date();
  const from = input('from', {type: 'date', value: isoDay(new Date(today.getTime() - 29 * 86400e3))});
  const to = input('to', {type: 'date', value: isoDay(today)});
  const interval = select('interval', [['day', 'by day'], ['month', 'by month']], 'day');
  const err = errorBox();
  const out = h('div', {class: 'report', 'aria-live': 'polite'});
  const params = () => {
    const p = {program: prog.control.value, from: from.value, to: to.value, interval: interval.value};
    if (scope.value !== 'program' && (admin || scope.value === 'link')) p[scope.value] = id.value.trim();
    return p;
  };
  const base = admin ? '/v1/admin/reports' : '/v1/promoter/reports';
  async function show() {
    err.textContent = '';
    try {
      const r = await call('GET', path(base, params()));
      showReport(out, r.series, interval.value === 'month');
    } catch (e) {
      if (e.status === 403) throw e;
      showError(err, e);
      out.replaceChildren();
    }
  }
  const form = h('form', {class: 'card filters', on: {submit: ev => { ev.preventDefault(); show().catch(e => showError(err, e)); }}},
    prog.el, field('For', scope), idField, field('From', from), field('To', to, 'days in UTC, both included'),
    field('Interval', interval),
    h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Show'}),
      button('Download CSV', () => download(path(base, params()), `report-${params().program}-${from.value}-${to.value}.csv`).catch(e => showError(err, e)), {class: 'quiet'})),
    err);
  view.append(form, out);
  await show();
}

// ---------------------------------------------------------------- operator pages

async function programsPage(view) {
  const listed = h('div');
  const err = errorBox();
  let editing = null;
  const f = {
    id: input('id', {required: true, pattern: '[A-Za-z0-9_-]{1,64}'}),
    cookie_days: input('cookie_days', {type: 'number', min: 1, max: 365, value: 30, required: true}),
    click_model: select('click_model', [['last', 'last click wins'], ['first', 'first click wins']], 'last'),
    protect_days: input('protect_days', {type: 'number', min: 1, max: 365, value: 30}),
    associate_days: input('associate_days', {type: 'number', min: 1, max: 365, value: 30}),
    allowed_hosts: input('allowed_hosts', {required: true}),
    protected: input('protected', {type: 'number', min: 0, max: 1, step: '0.000001', inputmode: 'decimal'}),
    standard: input('standard', {type: 'number', min: 0, max: 1, step: '0.000001', inputmode: 'decimal'}),
    tier_bonus: input('tier_bonus'),
    products: input('products'),
    hold_days: input('hold_days', {type: 'number', min: 0, max: 365, value: 30}),
    min_payout: input('min_payout', {type: 'number', min: 0, value: 0}),
  };
  const heading = h('h2', {text: 'New program'});
  const cancel = button('New program instead', () => edit(null), {class: 'quiet', hidden: true});
  function edit(p) {
    editing = p;
    err.textContent = '';
    heading.textContent = p ? 'Edit program ' + p.id : 'New program';
    cancel.hidden = !p;
    f.id.value = p ? p.id : '';
    f.id.readOnly = !!p;
    f.cookie_days.value = p ? p.cookie_days : 30;
    f.click_model.value = p ? p.click_model || 'last' : 'last';
    f.protect_days.value = p ? p.protect_days || 30 : 30;
    f.associate_days.value = p ? p.associate_days || 30 : 30;
    f.allowed_hosts.value = p ? (p.allowed_hosts || []).join(', ') : '';
    f.protected.value = p && p.rates ? p.rates.protected ?? '' : '';
    f.standard.value = p && p.rates ? p.rates.standard ?? '' : '';
    f.tier_bonus.value = p ? (p.tier_bonus || []).join(', ') : '';
    f.products.value = p ? (p.products || []).join(', ') : '';
    f.hold_days.value = p ? p.hold_days ?? 30 : 30;
    f.min_payout.value = p ? p.min_payout ?? 0 : 0;
    if (p) f.cookie_days.focus();
  }
  async function save(ev) {
    ev.preventDefault();
    err.textContent = '';
    const id = f.id.value.trim();
    // An edit sends the program as stored with the form's fields over
    // it, so that fields this form does not show are kept.
    const p = {...(editing || {})};
    delete p.id;
    Object.assign(p, {
      cookie_days: num(f.cookie_days.value),
      click_model: f.click_model.value,
      protect_days: num(f.protect_days.value),
      associate_days: num(f.associate_days.value),
      allowed_hosts: list(f.allowed_hosts.value),
      rates: {...(p.rates || {}), protected: num(f.protected.value), standard: num(f.standard.value)},
      tier_bonus: list(f.tier_bonus.value).map(Number),
      products: list(f.products.value),
      hold_days: num(f.hold_days.value),
      min_payout: num(f.min_payout.value),
    });
    try {
      const out = await call('PUT', '/v1/admin/programs/' + encodeURIComponent(id), {body: p});
      programCache = null;
      announce('Saved program ' + out.id);
      edit(null);
      await load();
    } catch (e) {
      showError(err, e);
    }
  }
  async function load() {
    programCache = null;
    await programIDs();
    const rows = programCache.map(p => h('tr', {},
      h('th', {scope: 'row', text: p.id}),
      h('td', {class: 'n', text: p.cookie_days}),
      h('td', {text: (p.allowed_hosts || []).join(' ')}),
      h('td', {text: p.rates ? `${p.rates.protected ?? 0} / ${p.rates.standard ?? 0}` : ''}),
      h('td', {class: 'n', text: p.hold_days}),
      h('td', {class: 'n', text: p.min_payout}),
      h('td', {}, button('Edit', () => edit(p), {'aria-label': 'Edit ' + p.id}))));
    listed.replaceChildren(rows.length ? table('Programs', ['ID', 'Cookie days', 'Allowed hosts', 'Rates protected / standard', 'Hold days', 'Min payout', ''], rows)
      : empty('No programs yet: create the first one below.'));
  }
  await load();
  view.append(listed, h('form', {class: 'card', id: 'program-form', novalidate: true, on: {submit: save}},
    heading,
    h('div', {class: 'grid'},
      field('ID', f.id, 'letters, digits, _ and -; the cookie is rg_ID'),
      field('Cookie days', f.cookie_days, '1 to 365'),
      field('Click model', f.click_model),
      field('Protection days', f.protect_days, 'a new registrant stays with the promoter this long'),
      field('Association days', f.associate_days, 'a returning customer\'s standard association lasts this long'),
      field('Allowed hosts', f.allowed_hosts, 'hosts links may lead to, comma-separated; .example.com for a whole domain'),
      field('Protected rate', f.protected, 'a fraction: 0.3 is 30 %'),
      field('Standard rate', f.standard),
      field('Tier bonuses', f.tier_bonus, 'fractions by tier, comma-separated: 0, 0.02, 0.04'),
      field('Products', f.products, 'empty: all'),
      field('Hold days', f.hold_days, 'the refund window before a commission is due'),
      field('Minimum payout', f.min_payout, 'minor units')),
    h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Save program'}), cancel),
    err));
}

async function promotersPage(view) {
  const listed = h('div');
  const err = errorBox();
  const tokErr = errorBox();
  const id = input('id', {required: true});
  const status = select('status', ['active', 'suspended'], 'active');
  const tier = input('tier', {type: 'number', min: 0, max: 100, value: 0});
  const ttl = input('ttl', {value: '720h'});
  const issued = h('div', {class: 'issued', 'aria-live': 'polite'});
  let revokeArmed = false;
  const revoke = button('Revoke all tokens', async () => {
    tokErr.textContent = '';
    if (!revokeArmed) {
      revokeArmed = true;
      revoke.textContent = `Revoke every token of ${id.value.trim()}: press again`;
      return;
    }
    revokeArmed = false;
    revoke.textContent = 'Revoke all tokens';
    try {
      await call('DELETE', `/v1/admin/promoters/${encodeURIComponent(id.value.trim())}/tokens`);
      announce('Revoked every token of ' + id.value.trim());
    } catch (e) {
      showError(tokErr, e);
    }
  }, {class: 'danger'});
  function edit(p) {
    id.value = p.id;
    status.value = p.status;
    tier.value = p.tier;
    issued.replaceChildren();
    id.focus();
  }
  async function load() {
    await pager(listed, 'Promoters', ['ID', 'Status', 'Tier', 'Fingerprints', ''],
      cursor => call('GET', path('/v1/admin/promoters', {limit: 100, cursor})),
      p => h('tr', {},
        h('th', {scope: 'row', text: p.id}), h('td', {text: p.status}), h('td', {class: 'n', text: p.tier}),
        h('td', {class: 'n', text: p.fingerprints}),
        h('td', {}, button('Edit', () => edit(p), {'aria-label': 'Edit ' + p.id}))),
      'No promoters yet: add the first one below.');
  }
  async function save(ev) {
    ev.preventDefault();
    err.textContent = '';
    try {
      // Without fingerprints, a PUT keeps the stored ones.
      const p = await call('PUT', '/v1/admin/promoters/' + encodeURIComponent(id.value.trim()),
        {body: {status: status.value, tier: num(tier.value) || 0}});
      announce(`Saved promoter ${p.id}: ${p.status}, tier ${p.tier}`);
      await load();
    } catch (e) {
      showError(err, e);
    }
  }
  async function issue() {
    tokErr.textContent = '';
    try {
      const t = await call('POST', `/v1/admin/promoters/${encodeURIComponent(id.value.trim())}/tokens`, {body: {ttl: ttl.value.trim()}});
      const out = input('issued-token', {readOnly: true, value: t.token, class: 'mono'});
      issued.replaceChildren(field(`Token for ${id.value.trim()}, until ${when(t.expires_at)}`, out,
        'refgate keeps no copy: hand it over now, privately'), button('Copy token', () => copyText(t.token)));
    } catch (e) {
      showError(tokErr, e);
    }
  }
  await load();
  view.append(listed,
    h('form', {class: 'card', id: 'promoter-form', novalidate: true, on: {submit: save}},
      h('h2', {text: 'Add or change a promoter'}),
      h('div', {class: 'grid'}, field('ID', id), field('Status', status, 'suspended: earns nothing new'), field('Tier', tier, 'index into the program\'s tier bonuses')),
      h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Save promoter'})), err),
    h('section', {class: 'card', 'aria-labelledby': 'tokens-h'},
      h('h2', {id: 'tokens-h', text: 'Promoter tokens'}),
      h('p', {text: 'A promoter token opens this console on the promoter\'s own data: links, numbers, customers (masked), ledger and statements.'}),
      h('div', {class: 'grid'}, field('Valid for', ttl, 'a duration, up to 8760h')),
      h('div', {class: 'actions'}, button('Issue a token for the promoter above', issue, {id: 'issue-token'}), revoke), issued, tokErr));
}

function hostAllowed(host, allowed) {
  host = host.toLowerCase();
  return allowed.some(a => {
    a = a.toLowerCase();
    return a.startsWith('.') ? host.endsWith(a) || host === a.slice(1) : host === a;
  });
}

async function linksPage(view) {
  const ids = await programIDs();
  const listed = h('div');
  const err = errorBox();
  const filterProgram = select('program', [['', 'all programs'], ...ids], '');
  const filterPromoter = input('promoter');
  const prog = await programPicker();
  const promoter = input('promoter', {required: true});
  const destination = input('destination', {type: 'url', required: true, placeholder: 'https://'});
  const code = input('code', {pattern: '[A-Za-z0-9_-]{3,64}'});
  const allowedNote = h('small', {class: 'hint', id: 'allowed-hosts'});
  destination.setAttribute('aria-describedby', 'allowed-hosts');
  const created = h('div', {'aria-live': 'polite'});
  const editor = h('div');
  const allowedOf = id => ((programCache || []).find(p => p.id === id) || {}).allowed_hosts || [];
  const note = () => { allowedNote.textContent = 'Allowed hosts: ' + (allowedOf(prog.control.value).join(', ') || '(none)'); };
  prog.control.addEventListener('change', note);
  note();

  async function patch(l, body, what) {
    err.textContent = '';
    try {
      await call('PATCH', '/v1/admin/links/' + encodeURIComponent(l.code), {body});
      announce(`Link ${l.code} ${what}`);
      await load();
    } catch (e) {
      showError(err, e);
    }
  }
  async function open(l) {
    const eerr = errorBox();
    let full;
    try {
      full = await call('GET', '/v1/admin/links/' + encodeURIComponent(l.code));
    } catch (e) {
      showError(err, e);
      return;
    }
    const dest = input('destination', {type: 'url', value: full.destination});
    const exp = input('expires_at', {type: 'datetime-local', value: full.expires_at ? toLocalInput(full.expires_at) : ''});
    const expiredURL = input('expired_url', {type: 'url', value: full.expired_url || ''});
    const editorQR = h('div', {class: 'qr-slot'});
    const clicks = Object.entries(full.clicks || {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none yet';
    editor.replaceChildren(h('form', {class: 'card', id: 'link-editor', novalidate: true, on: {submit: async ev => {
      ev.preventDefault();
      eerr.textContent = '';
      try {
        await call('PATCH', '/v1/admin/links/' + encodeURIComponent(l.code), {body: {destination: dest.value.trim(),
          expires_at: exp.value ? new Date(exp.value).toISOString() : null, expired_url: expiredURL.value.trim()}});
        announce('Saved link ' + l.code);
        editor.replaceChildren();
        await load();
      } catch (e) {
        showError(eerr, e);
      }
    }}},
    h('h2', {text: 'Link ' + l.code}),
    h('p', {}, h('span', {class: 'mono', text: full.url}), ' ', linkTools(full, editorQR)), editorQR,
    h('p', {text: 'Clicks: ' + clicks}),
    h('div', {class: 'grid'}, field('Destination', dest), field('Expires at', exp, 'your local time; empty: never'),
      field('Where an inactive link leads', expiredURL, 'empty: its destination')),
    h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Save link'}), button('Close', () => editor.replaceChildren(), {class: 'quiet'})),
    eerr));
    editor.querySelector('h2').scrollIntoView();
    dest.focus();
  }
  async function load() {
    await pager(listed, 'Links', ['Code', 'URL', 'Program', 'Promoter', 'Destination', 'State', ''],
      cursor => call('GET', path('/v1/admin/links', {program: filterProgram.value, promoter: filterPromoter.value.trim(), limit: 100, cursor})),
      l => {
        const qr = h('div', {class: 'qr-slot'});
        const paused = l.status === 'paused';
        return h('tr', {},
          h('th', {scope: 'row', text: l.code}),
          h('td', {}, h('span', {class: 'mono', text: l.url}), qr),
          h('td', {text: l.program}), h('td', {text: l.promoter}), h('td', {class: 'wrap', text: l.destination}),
          h('td', {text: linkState(l)}),
          h('td', {}, linkTools(l, qr),
            h('span', {class: 'tools'},
              button(paused ? 'Resume' : 'Pause', () => patch(l, {status: paused ? 'active' : 'paused'}, paused ? 'resumed' : 'paused'), {'aria-label': (paused ? 'Resume ' : 'Pause ') + l.code}),
              button('Expire now', () => patch(l, {expires_at: new Date().toISOString()}, 'expired'), {'aria-label': 'Expire ' + l.code + ' now'}),
              button('Edit', () => open(l), {'aria-label': 'Edit ' + l.code}))));
      }, 'No links here yet.');
  }
  async function create(ev) {
    ev.preventDefault();
    err.textContent = '';
    const cerr = createErr;
    cerr.textContent = '';
    let u;
    try {
      u = new URL(destination.value.trim());
    } catch {
      cerr.textContent = 'The destination is not a URL: write it in full, https://…';
      return;
    }
    const allowed = allowedOf(prog.control.value);
    if (!hostAllowed(u.hostname, allowed)) {
      cerr.textContent = `${u.hostname} is not among program ${prog.control.value}'s allowed hosts (${allowed.join(', ')}): edit the program first.`;
      return;
    }
    try {
      const l = await call('POST', '/v1/admin/links', {body: {program: prog.control.value, promoter: promoter.value.trim(),
        destination: destination.value.trim(), code: code.value.trim() || undefined}});
      const qr = h('div', {class: 'qr-slot'});
      created.replaceChildren(h('p', {class: 'ok'}, 'Created ', h('span', {class: 'mono', id: 'created-url', text: l.url}), ' ', linkTools(l, qr)), qr);
      code.value = '';
      await load();
    } catch (e) {
      showError(cerr, e);
    }
  }
  const createErr = errorBox();
  view.append(
    h('form', {class: 'card filters', on: {submit: ev => { ev.preventDefault(); load().catch(e => showError(err, e)); }}},
      field('Program', filterProgram), field('Promoter', filterPromoter),
      h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Filter'}))),
    listed, err, editor,
    h('form', {class: 'card', id: 'link-form', novalidate: true, on: {submit: create}},
      h('h2', {text: 'New link'}),
      h('div', {class: 'grid'}, prog.el, field('Promoter', promoter),
        h('div', {class: 'field'}, h('label', {for: destination.id = 'link-destination', text: 'Destination'}), destination, allowedNote),
        field('Code', code, 'optional: 3 to 64 of A-Z a-z 0-9 _ -; empty: a random one')),
      h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Create link'})), createErr, created));
  await load();
}

function toLocalInput(t) {
  const d = new Date(t);
  const pad = n => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function entryRows(items, admin) {
  return items.map(e => h('tr', {},
    h('th', {scope: 'row', class: 'mono', text: e.id}),
    h('td', {text: e.kind}),
    h('td', {class: 'n', text: money(e.amount, e.currency)}),
    h('td', {text: e.order || ''}),
    h('td', {text: e.customer || ''}),
    h('td', {text: e.reason || ''}),
    h('td', {text: when(e.at)}),
    h('td', {text: when(e.available_at)}),
    h('td', {text: e.status}),
    admin ? h('td', {class: 'mono', text: e.statement || ''}) : null));
}

const ENTRY_HEADERS = ['Entry', 'Kind', 'Amount', 'Order', 'Customer', 'Reason', 'At', 'Available at', 'Status'];

function balanceCard(b) {
  const cur = Object.entries(b.balances || {});
  if (!cur.length) return empty('Nothing owed yet.');
  return table('Balance', ['Currency', 'Pending', 'Available', 'Settled (open statements)', 'Paid'],
    cur.map(([c, v]) => h('tr', {}, h('th', {scope: 'row', text: c}),
      ...['pending', 'available', 'settled', 'paid'].map(k => h('td', {class: 'n', text: money(v[k], c)})))));
}

async function ledgerPage(view) {
  const prog = await programPicker();
  const promoter = input('promoter', {required: true});
  const status = select('status', [['', 'any'], 'pending', 'available', 'settled', 'paid'], '');
  const err = errorBox();
  const out = h('div', {'aria-live': 'polite'});
  async function show() {
    err.textContent = '';
    if (!promoter.value.trim()) {
      err.textContent = 'Name a promoter: the ledger is kept per program and promoter.';
      return;
    }
    const q = {program: prog.control.value, promoter: promoter.value.trim()};
    const bal = h('div');
    const entries = h('div');
    out.replaceChildren(h('h2', {text: `${q.promoter} in ${q.program}`}), bal, entries);
    try {
      bal.replaceChildren(balanceCard(await call('GET', path(`/v1/admin/promoters/${encodeURIComponent(q.promoter)}/balance`, {program: q.program}))));
      await pager(entries, 'Ledger entries, newest first', [...ENTRY_HEADERS, 'Statement'],
        cursor => call('GET', path('/v1/admin/ledger', {...q, status: status.value, limit: 100, cursor})),
        e => entryRows([e], true)[0], 'No entries.');
    } catch (e) {
      showError(err, e);
    }
  }
  const adj = {id: input('id', {required: true}), amount: input('amount', {type: 'number', step: 1, required: true}),
    currency: input('currency', {value: 'CNY', required: true}), reason: input('reason', {required: true})};
  const adjErr = errorBox();
  async function adjust(ev) {
    ev.preventDefault();
    adjErr.textContent = '';
    try {
      const e = await call('POST', '/v1/admin/ledger/adjustments', {body: {id: adj.id.value.trim(), program: prog.control.value,
        promoter: promoter.value.trim(), amount: num(adj.amount.value), currency: adj.currency.value.trim(), reason: adj.reason.value.trim()}});
      announce(`Adjustment ${e.id}: ${money(e.amount, e.currency)}`);
      await show();
    } catch (e) {
      showError(adjErr, e);
    }
  }
  view.append(
    h('form', {class: 'card filters', on: {submit: ev => { ev.preventDefault(); show(); }}},
      prog.el, field('Promoter', promoter), field('Status', status),
      h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Show ledger'})), err),
    out,
    h('form', {class: 'card', id: 'adjustment-form', novalidate: true, on: {submit: adjust}},
      h('h2', {text: 'Adjustment'}),
      h('p', {text: 'A signed entry for the program and promoter above: goodwill, a clawback, a correction. The same id again changes nothing.'}),
      h('div', {class: 'grid'}, field('ID', adj.id), field('Amount', adj.amount, 'minor units, negative to deduct'),
        field('Currency', adj.currency), field('Reason', adj.reason)),
      h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Add adjustment'})), adjErr));
}

function statementRow(s, admin, onPaid) {
  const actions = h('td');
  if (admin) {
    const err = errorBox();
    actions.append(button('Download CSV', () => download(`/v1/admin/statements/${encodeURIComponent(s.id)}/entries`, s.id + '.csv')
      .catch(e => showError(err, e)), {'aria-label': 'Download CSV of ' + s.id}));
    if (s.status === 'open') {
      const ref = input('reference', {placeholder: 'payment reference', 'aria-label': 'Payment reference for ' + s.id});
      actions.append(h('form', {class: 'inline', on: {submit: async ev => {
        ev.preventDefault();
        err.textContent = '';
        try {
          await call('POST', `/v1/admin/statements/${encodeURIComponent(s.id)}/paid`, {body: {reference: ref.value.trim()}});
          announce(`Statement ${s.id} marked paid`);
          await onPaid();
        } catch (e) {
          showError(err, e);
        }
      }}}, ref, h('button', {type: 'submit', text: 'Mark paid', 'aria-label': 'Mark ' + s.id + ' paid'})));
    }
    actions.append(err);
  }
  return h('tr', {},
    h('th', {scope: 'row', class: 'mono', text: s.id}),
    h('td', {text: s.promoter}),
    h('td', {text: when(s.through)}),
    h('td', {class: 'n', text: s.entries}),
    h('td', {class: 'n', text: money(s.amount, s.currency)}),
    h('td', {text: s.status + (s.reference ? ' (' + s.reference + ')' : '')}),
    h('td', {text: when(s.paid_at || s.created_at)}),
    admin ? actions : null);
}

const STATEMENT_HEADERS = ['Statement', 'Promoter', 'Through', 'Entries', 'Amount', 'Status', 'Created or paid'];

async function statementsPage(view) {
  const prog = await programPicker();
  const promoter = input('promoter');
  const through = input('through', {type: 'datetime-local'});
  const err = errorBox();
  const runErr = errorBox();
  const result = h('div', {'aria-live': 'polite'});
  const listed = h('div');
  async function load() {
    await pager(listed, `Statements of ${prog.control.value}, newest first`, [...STATEMENT_HEADERS, ''],
      cursor => call('GET', path('/v1/admin/statements', {program: prog.control.value, promoter: promoter.value.trim(), limit: 100, cursor})),
      s => statementRow(s, true, load), 'No statements yet.');
  }
  async function run(ev) {
    ev.preventDefault();
    runErr.textContent = '';
    try {
      const body = {program: prog.control.value};
      if (through.value) body.through = new Date(through.value).toISOString();
      const r = await call('POST', '/v1/admin/statements', {body});
      const n = r.statements.length;
      result.replaceChildren(h('p', {class: 'ok', id: 'settlement-result',
        text: n ? `Settlement made ${n} statement${n > 1 ? 's' : ''}: ${r.statements.map(s => `${s.promoter} ${money(s.amount, s.currency)}`).join(', ')}`
          : 'Nothing was due: no statement made.'}));
      await load();
    } catch (e) {
      showError(runErr, e);
    }
  }
  view.append(
    h('form', {class: 'card', id: 'settle-form', novalidate: true, on: {submit: run}},
      h('h2', {text: 'Run settlement'}),
      h('p', {text: 'Settles every available entry of the program, per promoter and currency, into an open statement. Running it again settles nothing twice.'}),
      h('div', {class: 'grid'}, prog.el, field('Through', through, 'your local time; empty: now')),
      h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Run settlement'})), runErr, result),
    h('form', {class: 'card filters', on: {submit: ev => { ev.preventDefault(); load().catch(e => showError(err, e)); }}},
      field('Promoter', promoter, 'empty: all'), h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Show statements'})), err),
    listed);
  await load();
  prog.control.addEventListener('change', () => load().catch(e => showError(err, e)));
}

async function customerPage(view) {
  const prog = await programPicker();
  const customer = input('customer', {required: true});
  const err = errorBox();
  const out = h('div', {'aria-live': 'polite'});
  async function lookup(ev) {
    ev.preventDefault();
    err.textContent = '';
    const q = {program: prog.control.value, customer: customer.value.trim()};
    try {
      const [a, x] = await Promise.all([call('GET', path('/v1/attribution', q)), call('GET', path('/v1/attribution/explain', q))]);
      const facts = [['Attributed', a.attributed ? 'yes' : 'no'], ['Promoter', a.promoter], ['Kind', a.kind], ['Link', a.link],
        ['Click', a.click], ['Since', when(a.since)], ['Expires', when(a.expires_at)], ['Reason', a.reason || '']];
      const decisions = x.decisions || [];
      // The commissions of this customer's orders: the entries of every
      // promoter the decisions name, read from their ledgers.
      const promoters = [...new Set(decisions.filter(d => d.promoter).map(d => d.promoter))];
      const entries = [];
      for (const p of promoters) {
        const page = await call('GET', path('/v1/admin/ledger', {program: q.program, promoter: p, limit: 1000}));
        entries.push(...page.items.filter(e => e.customer === q.customer));
      }
      out.replaceChildren(
        h('h2', {text: `${q.customer} in ${q.program}`}),
        h('dl', {class: 'facts'}, facts.map(([k, v]) => [h('dt', {text: k}), h('dd', {text: v || '—'})])),
        decisions.length ? table('Decisions, newest first (the explain log)', ['At', 'Event', 'Promoter', 'Click', 'Outcome', 'Reason', 'Order', 'Refund'],
          decisions.map(d => h('tr', {}, h('th', {scope: 'row', text: when(d.at)}), h('td', {text: d.event}), h('td', {text: d.promoter || ''}),
            h('td', {class: 'mono', text: d.click || ''}), h('td', {text: d.outcome}), h('td', {text: d.reason || ''}),
            h('td', {text: d.order || ''}), h('td', {text: d.refund || ''}))))
          : empty('No decisions are kept for this customer.'),
        entries.length ? table('Ledger entries of this customer\'s orders', [...ENTRY_HEADERS, 'Statement'], entryRows(entries, true))
          : empty('No ledger entries for this customer.'));
    } catch (e) {
      showError(err, e);
    }
  }
  view.append(h('form', {class: 'card filters', id: 'customer-form', on: {submit: lookup}},
    prog.el, field('Customer', customer, 'the storefront\'s customer id'),
    h('div', {class: 'actions'}, h('button', {type: 'submit', text: 'Look up'})), err), out);
}

// ---------------------------------------------------------------- promoter pages

async function myLinksPage(view) {
  const listed = h('div', {class: 'cards'});
  const err = errorBox();
  let cursor = '';
  const more = button('Show more', () => next().catch(e => showError(err, e)), {hidden: true, class: 'quiet'});
  async function next() {
    const page = await call('GET', path('/v1/promoter/links', {limit: 100, cursor}));
    for (const l of page.items) {
      const qr = h('div', {class: 'qr-slot'});
      listed.append(h('article', {class: 'card link'},
        h('h2', {text: l.code}),
        h('p', {class: 'mono', text: l.url}),
        h('p', {class: 'muted'}, `${l.program} → `, h('span', {class: 'wrap', text: l.destination}), ` (${linkState(l)})`),
        linkTools(l, qr), qr));
    }
    cursor = page.next_cursor || '';
    more.hidden = !cursor;
    if (!listed.children.length) listed.append(empty('You have no links yet: ask the program\'s operator for one.'));
  }
  await next();
  view.append(listed, more, err);
}

async function myCustomersPage(view) {
  const prog = await programPicker();
  const listed = h('div');
  const err = errorBox();
  async function load() {
    await pager(listed, 'Customers you hold now, newest first', ['Customer', 'Kind', 'Since', 'Until'],
      cursor => call('GET', path('/v1/promoter/customers', {program: prog.control.value, limit: 100, cursor})),
      c => h('tr', {}, h('th', {scope: 'row', class: 'mono', text: c.customer}), h('td', {text: c.kind}),
        h('td', {text: when(c.since)}), h('td', {text: when(c.expires_at)})),
      'No customers yet.');
  }
  prog.control.addEventListener('change', () => load().catch(e => showError(err, e)));
  view.append(h('form', {class: 'card filters', on: {submit: ev => ev.preventDefault()}}, prog.el, err), listed);
  await load();
}

async function myLedgerPage(view) {
  const prog = await programPicker();
  const bal = h('div');
  const listed = h('div');
  const err = errorBox();
  async function load() {
    bal.replaceChildren(balanceCard(await call('GET', path('/v1/promoter/balance', {program: prog.control.value}))));
    await pager(listed, 'Ledger entries, newest first', ENTRY_HEADERS,
      cursor => call('GET', path('/v1/promoter/ledger', {program: prog.control.value, limit: 100, cursor})),
      e => entryRows([e], false)[0], 'No entries yet.');
  }
  prog.control.addEventListener('change', () => load().catch(e => showError(err, e)));
  view.append(h('form', {class: 'card filters', on: {submit: ev => ev.preventDefault()}}, prog.el, err), bal, listed);
  await load();
}

async function myStatementsPage(view) {
  const prog = await programPicker();
  const listed = h('div');
  const err = errorBox();
  async function load() {
    await pager(listed, 'Statements, newest first', STATEMENT_HEADERS,
      cursor => call('GET', path('/v1/promoter/statements', {program: prog.control.value, limit: 100, cursor})),
      s => statementRow(s, false), 'No statements yet.');
  }
  prog.control.addEventListener('change', () => load().catch(e => showError(err, e)));
  view.append(h('form', {class: 'card filters', on: {submit: ev => ev.preventDefault()}}, prog.el, err), listed);
  await load();
}

// ---------------------------------------------------------------- router

const routes = {
  '/programs': {title: 'Programs', role: 'admin', render: programsPage,
    intro: 'The programs\' rules: cookie window, allowed hosts, rates, hold and minimum payout.'},
  '/promoters': {title: 'Promoters', role: 'admin', render: promotersPage,
    intro: 'Promoters\' status and tier, and the tokens that open this console for them.'},
  '/links': {title: 'Links', role: 'admin', render: linksPage,
    intro: 'Create links (their destination must be one of the program\'s allowed hosts), copy them, show their QR codes, pause or expire them.'},
  '/reports': {title: 'Reports', role: 'admin', render: v => reportPage(v, true),
    intro: 'Clicks by outcome, visitors, binds, conversions and commission over time, for a program, a promoter or a link.'},
  '/ledger': {title: 'Ledger', role: 'admin', render: ledgerPage,
    intro: 'What a promoter is owed: every entry, its status, and the balance.'},
  '/statements': {title: 'Statements', role: 'admin', render: statementsPage,
    intro: 'Run settlement, download a statement\'s CSV to pay from, mark it paid.'},
  '/customer': {title: 'Customer', role: 'admin', render: customerPage,
    intro: 'Who holds a customer, every decision about them and their orders\' commissions: a disputed commission, answered in one screen.'},
  '/my/links': {title: 'My links', role: 'promoter', render: myLinksPage,
    intro: 'Your links: copy one, show its QR code, or share it.'},
  '/my/numbers': {title: 'My numbers', role: 'promoter', render: v => reportPage(v, false),
    intro: 'Your clicks, visitors, binds, conversions and commission over time.'},
  '/my/customers': {title: 'Customers', role: 'promoter', render: myCustomersPage,
    intro: 'The customers you hold now (their ids masked).'},
  '/my/ledger': {title: 'Ledger', role: 'promoter', render: myLedgerPage,
    intro: 'Your balance and every entry: pending during the refund window, then available, settled and paid.'},
  '/my/statements': {title: 'Statements', role: 'promoter', render: myStatementsPage,
    intro: 'Your statements and whether they are paid.'},
};

function refusal(route, err) {
  const need = route.role === 'admin' ? 'the admin token' : 'a promoter token';
  return h('div', {class: 'card refused', role: 'alert', id: 'refused'},
    h('h2', {text: `This page needs ${need}`}),
    h('p', {text: `refgate refused the request with your token: ${describe(err)}. Sign out and sign in with ${need} to use it.`}));
}

let rendering = 0;
async function render() {
  const view = document.getElementById('view');
  if (!session.role) return;
  const hash = location.hash.slice(1) || (session.role === 'admin' ? '/programs' : '/my/links');
  const route = routes[hash];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === '#' + hash) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const n = ++rendering;
  const page = h('div', {class: 'page'});
  const title = h('h1', {tabindex: '-1', text: route ? route.title : 'No such page'});
  view.replaceChildren(title);
  document.title = (route ? route.title : 'No such page') + ' · refgate';
  if (!route) {
    view.append(h('p', {}, 'Pick a page above.'));
    return;
  }
  view.append(h('p', {class: 'intro', text: route.intro}), page);
  page.setAttribute('aria-busy', 'true');
  pageRole = route.role;
  try {
    await route.render(page);
  } catch (e) {
    if (n !== rendering) return;
    if (e.status === 403) {
      page.replaceChildren(refusal(route, e));
    } else {
      page.append(h('p', {class: 'error', role: 'alert', text: describe(e)}));
    }
  } finally {
    page.removeAttribute('aria-busy');
    if (n === rendering) view.dataset.ready = hash;
  }
  if (n === rendering) title.focus({preventScroll: true});
}

function route() {
  document.getElementById('view').dataset.ready = '';
  render();
}

async function start() {
  document.body.append(h('div', {id: 'status', class: 'offscreen', role: 'status', 'aria-live': 'polite'}));
  document.getElementById('signin-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const tok = document.getElementById('token').value.trim();
    const err = document.getElementById('signin-error');
    err.textContent = '';
    if (!tok) {
      err.textContent = 'Paste a token first.';
      return;
    }
    try {
      await signIn(tok);
      document.getElementById('token').value = '';
      route();
    } catch (e) {
      err.textContent = describe(e);
    }
  });
  document.getElementById('signout').addEventListener('click', () => {
    location.hash = '';
    signedOut('Signed out.');
  });
  window.addEventListener('hashchange', route);
  const tok = token();
  if (!tok) {
    signedOut('');
    return;
  }
  try {
    await signIn(tok);
    route();
  } catch (e) {
    signedOut(describe(e));
  }
}

start();
