// The scores dashboard. Counters come from /metrics, exams and students from the JSON API, and
// the accepted events streamed from /scores say what changed. Event handlers only take note;
// the page redraws twice a second whatever the event rate, so it stays smooth at 100k events/s.
'use strict';

const REDRAW_MS = 500;
const METRICS_MS = 1000;
const RECONNECT_MS = 2000;
/** How many recent events to replay on load, to learn which exams are the most recent. */
const HISTORY = 5000;
const EXAM_ROWS = 15;
/** The ingest rate is the mean over this long: the feed comes in bursts, a poll's worth of
 * events at a time, and a rate over one poll flips between a burst's and zero. */
const RATE_WINDOW_MS = 10000;
const RESULT_ROWS = 100;
const SVG = 'http://www.w3.org/2000/svg';
/** The layout in which the exam's details stand below the list (dashboard.css says so too). */
const STACKED = '(max-width: 48rem)';

const count = new Intl.NumberFormat('en');
const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 3, minimumFractionDigits: 3 });
const el = (id) => document.getElementById(id);

const live = {
  /** The last sequence number received from /scores. */
  lastSeq: 0,
  streamOpen: false,
  serviceUp: null,
  /** Exams in the order of their latest event, the most recent last. */
  recent: new Set(),
  /** Exam number -> sequence number of the first event seen for it (0: before the page). */
  firstSeen: new Map(),
  /** The sequence number of the snapshot the service serves, as last heard. */
  snapshotSeq: 0,
  /** Exams with events since they were last fetched. */
  changed: new Set(),
  /** Exam number -> { average, count } as last fetched. */
  exams: new Map(),
  fetching: new Set(),
  selected: null,
  student: null,
  studentNeedle: '',
  studentChanged: false,
  /** The { seq, time } samples of the last RATE_WINDOW_MS, oldest first, for the ingest rate. */
  rateSamples: [],
};

// ---- the connection to the service ----

function showLink() {
  const link = el('link');
  if (live.serviceUp === false) {
    link.dataset.state = 'down';
    link.textContent = 'Service unreachable, retrying…';
  } else if (live.streamOpen) {
    link.dataset.state = 'live';
    link.textContent = 'Live';
  } else {
    link.dataset.state = 'connecting';
    link.textContent = 'Connecting to the event stream…';
  }
}

function connect() {
  const stream = new EventSource(`/scores?after=${live.lastSeq}`);
  stream.addEventListener('open', () => {
    live.streamOpen = true;
    showLink();
  });
  stream.addEventListener('score', onScore);
  stream.addEventListener('error', () => {
    live.streamOpen = false;
    showLink();
    // The browser reconnects by itself (with Last-Event-ID) unless the service answered with
    // an error, for instance while it restarts; then start over from the last event seen.
    if (stream.readyState === EventSource.CLOSED) {
      setTimeout(connect, RECONNECT_MS);
    }
  });
}

/** Notes what one accepted event changed. Runs for every event: no DOM work here. */
function onScore(event) {
  const data = event.data;
  const at = data.indexOf('"exam":');
  if (at >= 0) {
    const exam = parseInt(data.slice(at + 7, at + 40), 10);
    live.recent.delete(exam);
    live.recent.add(exam);
    live.changed.add(exam);
    if (!live.firstSeen.has(exam)) {
      live.firstSeen.set(exam, Number(event.lastEventId));
    }
  }
  if (live.student !== null && data.includes(live.studentNeedle)) {
    live.studentChanged = true;
  }
  const seq = Number(event.lastEventId);
  if (seq > live.lastSeq) {
    live.lastSeq = seq;
  }
}

// ---- counters ----

function parseMetrics(text) {
  const metrics = { rejected: 0 };
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, space);
    const value = Number(line.slice(space + 1));
    if (name.startsWith('scores_events_rejected_total')) {
      metrics.rejected += value;
    } else {
      metrics[name] = value;
    }
  }
  return metrics;
}

function showCounters(metrics) {
  const seq = metrics.scores_snapshot_seq;
  live.snapshotSeq = Math.max(live.snapshotSeq, seq);
  el('accepted').textContent = count.format(metrics.scores_events_accepted_total);
  el('rejected').textContent = count.format(metrics.rejected);
  el('ignored').textContent = count.format(metrics.scores_events_ignored_total);
  el('students').textContent = count.format(metrics.scores_students);
  el('exams').textContent = count.format(metrics.scores_exams);
  el('seq').textContent = count.format(seq);

  const upstream = el('upstream');
  const connected = metrics.scores_upstream_connected === 1;
  const reconnects = metrics.scores_upstream_reconnects_total;
  upstream.dataset.state = connected ? 'connected' : 'disconnected';
  upstream.textContent = connected ? 'connected' : 'disconnected';
  upstream.title = `${count.format(reconnects)} reconnects`;

  const rate = noteRate(live.rateSamples, seq, performance.now());
  if (rate !== null) {
    el('rate').textContent = count.format(Math.round(rate));
  }
}

/** Adds a sample to `samples` and returns the mean rate in events per second over the window
 * they span, which reaches back RATE_WINDOW_MS (null until two samples are a moment apart).
 * A sequence number that goes back (a service started afresh) starts the window over. */
function noteRate(samples, seq, now) {
  const last = samples[samples.length - 1];
  if (last !== undefined && (seq < last.seq || now < last.time)) {
    samples.length = 0;
  }
  samples.push({ seq, time: now });
  // Keep the newest sample at least RATE_WINDOW_MS old, so the window spans all of it.
  while (samples.length > 2 && now - samples[1].time >= RATE_WINDOW_MS) {
    samples.shift();
  }
  const first = samples[0];
  if (now - first.time < 1) {
    return null;
  }
  return (seq - first.seq) / ((now - first.time) / 1000);
}

async function pollMetrics() {
  try {
    const response = await fetch('/metrics', { cache: 'no-store' });
    if (!response.ok) {
      throw new Error(`/metrics answered ${response.status}`);
    }
    showCounters(parseMetrics(await response.text()));
    live.serviceUp = true;
  } catch {
    live.serviceUp = false;
    live.rateSamples.length = 0;
  }
  showLink();
  setTimeout(pollMetrics, METRICS_MS);
}

// ---- exams ----

async function refreshExam(exam) {
  if (live.fetching.has(exam)) {
    return;
  }
  live.fetching.add(exam);
  live.changed.delete(exam);
  try {
    const response = await fetch(`/exams/${exam}`);
    if (!response.ok) {
      if (exam === live.selected) {
        el('exam-summary').textContent = `No results for exam ${exam} yet.`;
        el('histogram-figure').hidden = true;
        el('exam-results').hidden = true;
        el('exam-more').textContent = '';
      }
      return;
    }
    live.snapshotSeq = Math.max(live.snapshotSeq, Number(response.headers.get('x-scores-seq')));
    const body = await response.json();
    live.exams.set(exam, { average: body.average, count: body.results.length });
    if (exam === live.selected) {
      showExam(body);
    }
  } catch {
    live.changed.add(exam);
  } finally {
    live.fetching.delete(exam);
  }
}

/** The most recent exams the page has figures for, newest first. Fetches figures for the
 * most recent exams that lack them or have changed, a bounded number per redraw. */
function newestExams() {
  const shown = [];
  let fetches = 0;
  const newestFirst = Array.from(live.recent).reverse();
  for (const exam of newestFirst) {
    if (shown.length === EXAM_ROWS) {
      break;
    }
    if (!isServed(exam)) {
      continue;
    }
    const known = live.exams.has(exam);
    if ((!known || live.changed.has(exam)) && fetches < EXAM_ROWS) {
      refreshExam(exam);
      fetches += 1;
    }
    if (known) {
      shown.push(exam);
    }
  }
  return shown;
}

/** The rows hold still while the pointer or the keyboard focus is in them. */
function examRowsInUse() {
  const rows = el('exam-rows');
  return rows.contains(document.activeElement) || rows.matches(':hover');
}

function showExamRows(exams) {
  const rows = el('exam-rows');
  if (exams.length === 0) {
    return;
  }
  if (examRowsInUse()) {
    for (const button of rows.querySelectorAll('button[data-exam]')) {
      const exam = Number(button.dataset.exam);
      if (live.changed.has(exam)) {
        refreshExam(exam);
      }
      fillExamRow(button.closest('tr'), exam);
    }
    return;
  }
  const fresh = exams.map((exam) => {
    const row = document.createElement('tr');
    const head = document.createElement('th');
    head.scope = 'row';
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.exam = String(exam);
    button.textContent = String(exam);
    button.setAttribute('aria-pressed', String(exam === live.selected));
    head.append(button);
    const average = document.createElement('td');
    average.className = 'num';
    const results = document.createElement('td');
    results.className = 'num';
    row.append(head, average, results);
    fillExamRow(row, exam);
    return row;
  });
  rows.replaceChildren(...fresh);
}

function fillExamRow(row, exam) {
  const info = live.exams.get(exam);
  const [, average, results] = row.children;
  average.textContent = info ? decimal.format(info.average) : '…';
  results.textContent = info ? count.format(info.count) : '…';
}

/** Shows `exam`'s results; `reveal` scrolls them into view where the columns are stacked. */
function select(exam, reveal) {
  live.selected = exam;
  history.replaceState(null, '', `#exam=${exam}`);
  for (const button of el('exam-rows').querySelectorAll('button[data-exam]')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.exam) === exam));
  }
  el('exam-title').textContent = `Exam ${exam}`;
  el('exam-summary').textContent = 'Loading…';
  refreshExam(exam);
  if (reveal && window.matchMedia(STACKED).matches) {
    el('exam-detail').scrollIntoView({ block: 'start' });
  }
}

function showExam(body) {
  const scores = body.results.map((result) => result.score);
  el('exam-title').textContent = `Exam ${body.exam}`;
  el('exam-summary').textContent =
    `${count.format(scores.length)} results, average ${decimal.format(body.average)}`;
  drawHistogram(body.exam, scores);

  const table = el('exam-results');
  const shown = body.results.slice(0, RESULT_ROWS)
    .map((result) => scoreRow(result.studentId, result.score));
  table.tBodies[0].replaceChildren(...shown);
  table.hidden = false;
  el('exam-more').textContent = body.results.length > RESULT_ROWS
    ? `The first ${RESULT_ROWS} of ${count.format(body.results.length)}, by student id; all at /exams/${body.exam}.`
    : '';
}

/** A table row: what was scored (a student or an exam), and the score, in full on hover. */
function scoreRow(label, value) {
  const row = document.createElement('tr');
  const name = document.createElement('td');
  name.textContent = label;
  const score = document.createElement('td');
  score.className = 'num';
  score.textContent = decimal.format(value);
  score.title = String(value);
  row.append(name, score);
  return row;
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Ten bars, one per tenth of the score range; a score of 1 counts in the last. */
function drawHistogram(exam, scores) {
  const bins = new Array(10).fill(0);
  for (const score of scores) {
    bins[Math.min(9, Math.floor(score * 10))] += 1;
  }
  const highest = Math.max(1, ...bins);
  const width = 320;
  const height = 150;
  const side = 10;
  const bottom = 18;
  const top = 14;
  const step = (width - 2 * side) / bins.length;
  const plot = height - bottom - top;

  const chart = el('histogram');
  const nodes = [svg('line', { x1: side, x2: width - side, y1: height - bottom, y2: height - bottom })];
  bins.forEach((n, i) => {
    const barHeight = (plot * n) / highest;
    const x = side + i * step;
    const bar = svg('rect', {
      class: 'bar', x: x + 2, y: height - bottom - barHeight, width: step - 4, height: barHeight,
    });
    bar.append(svg('title', {}, `${(i / 10).toFixed(1)} to ${((i + 1) / 10).toFixed(1)}: ${n}`));
    nodes.push(bar);
    if (n > 0) {
      nodes.push(svg('text', {
        class: 'count', x: x + step / 2, y: height - bottom - barHeight - 3, 'text-anchor': 'middle',
      }, String(n)));
    }
  });
  for (const [label, x] of [['0', side], ['0.5', width / 2], ['1', width - side]]) {
    nodes.push(svg('text', { class: 'axis', x, y: height - 4, 'text-anchor': 'middle' }, label));
  }
  chart.replaceChildren(...nodes);
  el('histogram-label').textContent =
    `Histogram of the ${count.format(scores.length)} scores of exam ${exam}, by tenth from 0 to 1`;
  el('histogram-figure').hidden = false;
}

// ---- students ----

async function lookUp(id, announce) {
  live.student = id;
  live.studentNeedle = `"studentId":${JSON.stringify(id)}`;
  live.studentChanged = false;
  const out = el('student-result');
  try {
    const response = await fetch(`/students/${encodeURIComponent(id)}`);
    const body = await response.json();
    if (live.student !== id) {
      return;
    }
    if (!response.ok) {
      const message = document.createElement('p');
      message.className = 'error';
      message.textContent = body.error ? body.error.message : `The service answered ${response.status}.`;
      out.replaceChildren(message);
      return;
    }
    const summary = document.createElement('p');
    const name = document.createElement('strong');
    name.textContent = body.studentId;
    summary.append(name, `: average ${decimal.format(body.average)} over ${count.format(body.results.length)} exams`);
    const table = document.createElement('table');
    table.innerHTML = '<caption class="visually-hidden">The student\'s results, by exam</caption>'
      + '<thead><tr><th scope="col">Exam</th><th scope="col" class="num">Score</th></tr></thead><tbody></tbody>';
    const rows = body.results.map((result) => scoreRow(String(result.exam), result.score));
    table.tBodies[0].append(...rows);
    const wrapper = document.createElement('div');
    wrapper.className = 'scroll tall';
    wrapper.tabIndex = 0;
    wrapper.setAttribute('role', 'region');
    wrapper.setAttribute('aria-label', `Results of ${body.studentId}`);
    wrapper.append(table);
    out.replaceChildren(summary, wrapper);
    out.setAttribute('aria-live', announce ? 'polite' : 'off');
  } catch {
    out.textContent = 'The service did not answer; try again.';
  }
}

// ---- putting it together ----

/** Whether the served snapshot knows the exam yet: events stream as soon as they are durable,
 * a moment before the snapshot that folds them is published. */
function isServed(exam) {
  return (live.firstSeen.get(exam) || 0) <= live.snapshotSeq;
}

function redraw() {
  const newest = newestExams();
  const selected = live.selected;
  if (selected !== null && live.changed.has(selected) && isServed(selected)) {
    refreshExam(selected);
  }
  showExamRows(newest);
  if (live.student !== null && live.studentChanged) {
    lookUp(live.student, false);
  }
}

async function start() {
  el('exam-rows').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-exam]');
    if (button) {
      select(Number(button.dataset.exam), true);
    }
  });
  el('exam-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const number = el('exam-number').value.trim();
    if (/^\d+$/.test(number)) {
      select(Number(number), true);
    }
  });
  el('student-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = el('student-id').value.trim();
    if (id !== '') {
      lookUp(id, true);
    }
  });

  // Every exam so far (the stream then moves the most recent to the top), and where to start
  // the stream so that it replays the latest events.
  try {
    const [exams, ready] = await Promise.all([fetch('/exams'), fetch('/readyz')]);
    if (exams.status === 401) {
      signIn();
      return;
    }
    if (exams.ok) {
      for (const exam of (await exams.json()).exams) {
        live.recent.add(exam);
        live.firstSeen.set(exam, 0);
      }
    }
    if (ready.ok) {
      live.lastSeq = Math.max(0, (await ready.json()).seq - HISTORY);
    }
  } catch {
    // The service is not up yet: the stream and the counters retry by themselves.
  }
  const linked = /^#exam=(\d+)$/.exec(location.hash);
  if (linked) {
    select(Number(linked[1]), false);
  }
  connect();
  pollMetrics();
  setInterval(redraw, REDRAW_MS);
}

// With access control on, the service answers only requests that carry a token. The page keeps
// it in a cookie, sent with every request of this page (the event stream's included, which
// cannot carry headers) and with no other site's (SameSite=Strict); never in a URL.
function signIn() {
  const form = el('sign-in');
  form.hidden = false;
  el('link').dataset.state = 'down';
  el('link').textContent = 'Sign in to see results';
  if (document.cookie.split('; ').some((pair) => pair.startsWith('scores_token='))) {
    el('sign-in-message').textContent = 'That token was not accepted. Try another.';
  }
  el('token').focus();
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = el('token').value.trim();
    if (token === '') {
      return;
    }
    const secure = location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = `scores_token=${encodeURIComponent(token)}; Path=/; SameSite=Strict${secure}`;
    location.reload();
  });
}

start();
