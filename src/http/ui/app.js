// Quicksilver debugging UI: subscribe with EventSource, publish with fetch, list subscriptions.
// Plain browser JavaScript, no build step, no dependency. Served under a CSP of
// `default-src 'self' …`: no inline script or style, and every text from the hub or the user is
// put into the page with textContent, never as HTML.
'use strict';

(function () {
  const HUB = new URL('/.well-known/mercure', window.location.href);
  const MAX_EVENTS = 500;

  const $ = (id) => document.getElementById(id);
  const lines = (text) => text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');

  /** A short local time with milliseconds, e.g. 14:03:07.251. */
  function timeNow() {
    const d = new Date();
    const pad = (n, w) => String(n).padStart(w || 2, '0');
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** "404 Not Found" from a fetch Response. */
  function statusLine(response) {
    return `${response.status} ${response.statusText || ''}`.trim();
  }

  /** The `WWW-Authenticate` header of a refusal, shown beside the hub's body. */
  function showAuthenticate(node, response) {
    const value = response && response.headers.get('www-authenticate');
    node.textContent = value ? `WWW-Authenticate: ${value}` : '';
    node.hidden = !value;
  }

  // --- tokens and protocols -------------------------------------------------------------------

  const DRAFT_07 = 'draft-07';
  const V1 = 'Mercure 1.0';

  /** What the page can tell of a JWT without its key: its protocol (Mercure 1.0 for an RFC 9068
   * access token, `typ: at+jwt`; draft-07 for any other JWT), `typ`, and a few claims. `null`
   * for an empty field; `{ protocol: null, problem }` when the header cannot be read. */
  function tokenInfo(jwt) {
    if (!jwt) return null;
    const parts = jwt.split('.');
    if (parts.length !== 3) return { protocol: null, problem: 'not a JWT (three dot-separated parts)' };
    const decode = (part) => {
      const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
      const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
      const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    };
    let head;
    try {
      head = decode(parts[0]);
    } catch {
      return { protocol: null, problem: 'its header is not base64url-encoded JSON' };
    }
    let claims = {};
    try {
      claims = decode(parts[1]) || {};
    } catch {
      // The hub will say what is wrong with it; the header is what decides the protocol.
    }
    const typ = typeof head.typ === 'string' ? head.typ : '';
    // RFC 9068: `at+jwt`, or the full media type; compared without case, as the hub does.
    const access = /^(application\/)?at\+jwt$/i.test(typ);
    return { protocol: access ? V1 : DRAFT_07, typ, alg: head.alg, claims };
  }

  /** A one-line description of a token, for the note under its field. */
  function describeToken(info) {
    if (!info) return '';
    if (!info.protocol) return `Cannot read this token: ${info.problem}. The hub will refuse it.`;
    const typ = info.typ ? `typ ${info.typ}` : 'no typ';
    const parts = [`${info.protocol} token (${typ}, alg ${info.alg || '?'})`];
    const { claims } = info;
    if (info.protocol === V1) {
      if (claims.iss) parts.push(`iss ${claims.iss}`);
      if (claims.aud) parts.push(`aud ${[].concat(claims.aud).join(' ')}`);
    }
    if (typeof claims.exp === 'number') {
      const left = Math.round(claims.exp - Date.now() / 1000);
      parts.push(left > 0 ? `expires in ${left} s` : `EXPIRED ${-left} s ago`);
    }
    return parts.join(', ');
  }

  /** The matcher types a line may choose with a prefix: parameter name → [protocol, label]. */
  const PREFIXES = {
    topic: [DRAFT_07, 'draft-07 topic or URI template'],
    match: [V1, 'Mercure 1.0 exact'],
    match_exact: [V1, 'Mercure 1.0 exact'],
    match_urlpattern: [V1, 'Mercure 1.0 URL Pattern'],
  };
  /** The select's values → the parameter they send. */
  const DEFAULT_PARAMETER = { topic: 'topic', exact: 'match', urlpattern: 'match_urlpattern' };

  /** Each selector line as { parameter, value, protocol, label }. */
  function selectors() {
    const fallback = DEFAULT_PARAMETER[$('sub-match-type').value] || 'topic';
    return lines($('sub-topics').value).map((line) => {
      const prefix = /^(topic|match|match_exact|match_urlpattern)=/.exec(line);
      const parameter = prefix ? prefix[1] : fallback;
      const value = prefix ? line.slice(prefix[0].length) : line;
      const [protocol, label] = PREFIXES[parameter];
      return { parameter, value, protocol, label };
    });
  }

  /** The subscription the form describes: its protocol, or the reason it must not be sent. */
  function subscriptionPlan() {
    const list = selectors();
    const jwt = $('sub-jwt').value.trim();
    const token = tokenInfo(jwt);
    const protocols = new Set(list.map((s) => s.protocol));
    if (protocols.size > 1) {
      return {
        list, jwt, token,
        problem: 'These selectors mix draft-07 topics with Mercure 1.0 matchers, which the hub refuses ' +
          '(400): use one protocol per subscription.',
      };
    }
    const selectorProtocol = [...protocols][0];
    const tokenProtocol = token && token.protocol;
    if (selectorProtocol && tokenProtocol && selectorProtocol !== tokenProtocol) {
      const problem = tokenProtocol === V1
        ? 'The subscriber JWT is a Mercure 1.0 access token (typ at+jwt) but the selectors are ' +
          'draft-07 topics: the hub would refuse the mix (400). Choose a Mercure 1.0 matcher type, ' +
          'or use a draft-07 token (with a mercure claim).'
        : `The subscriber JWT is a draft-07 token (typ ${token.typ || 'absent'}, not at+jwt) but the ` +
          'selectors are Mercure 1.0 matchers: the hub would refuse the mix (400). Choose the draft-07 ' +
          'matcher type, or use an access token.';
      return { list, jwt, token, problem };
    }
    return { list, jwt, token, protocol: selectorProtocol || tokenProtocol || DRAFT_07 };
  }

  /** Shows, as the form changes, what would be sent and whether it can be. */
  function refreshPlan() {
    const plan = subscriptionPlan();
    const list = $('sub-plan');
    list.replaceChildren(
      ...plan.list.map((s) => {
        const item = element('li', s.protocol === V1 ? 'v1' : 'draft-07');
        item.append(element('span', 'plan-type', s.label), ' ', element('code', '', `${s.parameter}=${s.value}`));
        return item;
      }),
    );
    const kind = $('sub-jwt-kind');
    kind.textContent = describeToken(plan.token);
    kind.hidden = !plan.token;
    const warning = $('subscribe-warning');
    warning.textContent = plan.problem ? `Not sendable: ${plan.problem}` : '';
    warning.hidden = !plan.problem;
    const cursor = plan.protocol === V1 ? 'last_event_id' : 'lastEventID';
    const hint = $('sub-cursor-name');
    hint.replaceChildren('(optional, sent as ', element('code', '', cursor), ')');
    return plan;
  }

  // --- subscribe ------------------------------------------------------------------------------

  /** The open subscription: { kind: 'eventsource', source } or { kind: 'fetch', controller }. */
  let current = null;
  let listenedTypes = new Set();
  let eventCount = 0;

  function setState(state, detail) {
    const node = $('connection-state');
    node.dataset.state = state;
    node.textContent = detail ? `${state}: ${detail}` : state;
  }

  function showSubscribeError(text) {
    const node = $('subscribe-error');
    node.textContent = text || '';
    node.hidden = !text;
  }

  /** The cursor headers of a subscription's answer, since they say where the replay starts. */
  function showResponse(text) {
    const node = $('subscribe-response');
    node.textContent = text || '';
    node.hidden = !text;
  }

  /** The subscription URL of `plan`: the selectors and the cursor parameter of its protocol, and
   * for draft-07 the token as the `authorization` parameter (the hub never reads a Mercure 1.0
   * token from the URL). */
  function subscriptionUrl(plan) {
    const url = new URL(HUB);
    for (const s of plan.list) url.searchParams.append(s.parameter, s.value);
    if (plan.jwt && plan.protocol === DRAFT_07) url.searchParams.set('authorization', plan.jwt);
    const lastEventId = $('sub-last-event-id').value.trim();
    if (lastEventId) url.searchParams.set(plan.protocol === V1 ? 'last_event_id' : 'lastEventID', lastEventId);
    return url;
  }

  /** Adds one received event ({ lastEventId, type, data }) to the list, newest first. */
  function addEvent(event) {
    const item = element('li', 'event');
    item.dataset.type = event.type;
    const meta = element('div', 'event-meta');
    const field = (name, value, className) => {
      const span = element('span', `tag ${className || ''}`.trim());
      span.append(element('span', 'tag-name', `${name} `), element('span', 'tag-value', value));
      return span;
    };
    meta.append(
      field('id', event.lastEventId || '(none)', 'event-id'),
      field('type', event.type, 'event-type'),
      field('time', timeNow(), 'event-time'),
    );
    item.append(meta, element('pre', 'event-data', event.data));
    const list = $('events');
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    eventCount += 1;
    $('event-count').textContent = `(${eventCount})`;
    $('events-empty').hidden = true;
  }

  /** Receives events of `type` on an open EventSource (EventSource needs one listener a type;
   * a fetch stream receives every type). */
  function listenTo(type) {
    if (!current || current.kind !== 'eventsource' || !type || listenedTypes.has(type)) return;
    listenedTypes.add(type);
    current.source.addEventListener(type, addEvent);
  }

  /** "the hub answered 401 Unauthorized — body. WWW-Authenticate: …" for a refused request. */
  async function refusal(response) {
    const body = (await response.text()).trim();
    const authenticate = response.headers.get('www-authenticate');
    return `the hub answered ${statusLine(response)}${body ? ` — ${body}` : ''}` +
      `${authenticate ? `\nWWW-Authenticate: ${authenticate}` : ''}`;
  }

  /** The hub's answer to the failed subscription, since EventSource does not give it. */
  async function explainFailure(url) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 5000);
    try {
      const response = await fetch(url, { signal: controller.signal, headers: { accept: 'text/event-stream' } });
      if (response.ok) {
        controller.abort();
        return 'the stream ended; the hub accepts the subscription again now';
      }
      return await refusal(response);
    } catch (error) {
      return error.name === 'AbortError' ? 'no answer from the hub' : `cannot reach the hub (${error.message})`;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A draft-07 subscription: a native EventSource, the token in the URL. */
  function subscribeWithEventSource(url) {
    const source = new EventSource(url.href);
    const mine = { kind: 'eventsource', source };
    current = mine;
    listenedTypes = new Set();
    listenTo('message');
    for (const type of $('sub-types').value.split(',')) listenTo(type.trim());
    source.onopen = () => {
      setState('open');
      showSubscribeError('');
    };
    source.onerror = async () => {
      if (current !== mine) return;
      if (source.readyState === EventSource.CLOSED) {
        // A refusal (401, 403, 400…) or a bad response: EventSource gives up.
        setState('error', 'closed by the hub');
        $('subscribe-button').textContent = 'Subscribe';
        current = null;
        showSubscribeError(`Subscription failed: ${await explainFailure(url)}.`);
      } else {
        setState('connecting', 'reconnecting after an error');
      }
    };
  }

  /** An event-stream parser (the WHATWG rules EventSource follows): feed it text, it calls
   * `dispatch({ type, data, lastEventId })` per event and `onRetry(ms)` per valid `retry`. */
  function eventStreamParser(dispatch, onRetry) {
    let buffer = '';
    let first = true;
    let data = [];
    let type = '';
    let lastEventId = '';
    const line = (text) => {
      if (text === '') {
        if (data.length > 0) dispatch({ type: type || 'message', data: data.join('\n'), lastEventId });
        data = [];
        type = '';
        return;
      }
      if (text.startsWith(':')) return;
      const colon = text.indexOf(':');
      const name = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? '' : text.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'data') data.push(value);
      else if (name === 'event') type = value;
      else if (name === 'id' && !value.includes('\0')) lastEventId = value;
      else if (name === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
    };
    return {
      push(text) {
        buffer += text;
        if (first && buffer.length > 0) {
          if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
          first = false;
        }
        // A line ends at CRLF, LF or CR; a CR at the very end may be the start of a CRLF.
        const ends = /\r\n|\n|\r(?!$)/g;
        let start = 0;
        let match;
        while ((match = ends.exec(buffer)) !== null) {
          line(buffer.slice(start, match.index));
          start = match.index + match[0].length;
        }
        buffer = buffer.slice(start);
      },
      get lastEventId() {
        return lastEventId;
      },
    };
  }

  /** A Mercure 1.0 subscription: `fetch` with the access token in `Authorization` (or the cookie)
   * and a streaming reader, since EventSource can send neither. Reconnects like EventSource when
   * the stream ends, from the last id received; gives up on a refusal, showing the hub's answer. */
  function subscribeWithFetch(url, jwt) {
    const controller = new AbortController();
    const mine = { kind: 'fetch', controller };
    current = mine;
    let retry = 3000;
    let lastEventId = '';
    const live = () => current === mine && !controller.signal.aborted;

    const connect = async () => {
      const headers = { accept: 'text/event-stream' };
      if (jwt) headers.authorization = `Bearer ${jwt}`;
      if (lastEventId) headers['last-event-id'] = lastEventId;
      let response;
      try {
        response = await fetch(url, {
          headers, signal: controller.signal, credentials: 'same-origin', cache: 'no-store',
        });
      } catch (error) {
        if (!live()) return;
        setState('connecting', `reconnecting after an error (${error.message})`);
        setTimeout(() => live() && connect(), retry);
        return;
      }
      if (!live()) return;
      const type = response.headers.get('content-type') || '';
      if (!response.ok || !/^text\/event-stream\b/i.test(type)) {
        const why = response.ok
          ? `the hub answered ${statusLine(response)} with ${type || 'no content type'}, not an event stream`
          : await refusal(response);
        if (!live()) return;
        setState('error', 'refused by the hub');
        $('subscribe-button').textContent = 'Subscribe';
        current = null;
        showSubscribeError(`Subscription failed: ${why}.`);
        return;
      }
      const cursors = ['Mercure-Last-Event-ID', 'Last-Event-ID']
        .map((name) => [name, response.headers.get(name)])
        .filter(([, value]) => value !== null)
        .map(([name, value]) => `${name}: ${value === '' ? '(empty)' : value}`);
      const cursorText = cursors.length ? cursors.join('; ') : 'no cursor header';
      showResponse(`${statusLine(response)} (Mercure 1.0, fetch stream); ${cursorText}`);
      setState('open');
      showSubscribeError('');
      const parser = eventStreamParser(
        (event) => {
          if (live()) addEvent(event);
        },
        (ms) => {
          retry = ms;
        },
      );
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
        }
      } catch (error) {
        if (!live()) return;
      } finally {
        lastEventId = parser.lastEventId || lastEventId;
      }
      if (!live()) return;
      setState('connecting', 'the stream ended; reconnecting');
      setTimeout(() => live() && connect(), retry);
    };
    connect();
  }

  function subscribe() {
    const plan = refreshPlan();
    if (plan.list.length === 0) {
      showSubscribeError('Enter at least one topic selector.');
      $('sub-topics').focus();
      return;
    }
    if (plan.problem) {
      // Never sent: the hub would answer 400, and the reason is known here.
      showSubscribeError(`Not sent: ${plan.problem}`);
      return;
    }
    showSubscribeError('');
    showResponse('');
    const url = subscriptionUrl(plan);
    setState('connecting');
    $('subscribe-button').textContent = 'Unsubscribe';
    if (plan.protocol === V1) subscribeWithFetch(url, plan.jwt);
    else subscribeWithEventSource(url);
  }

  function unsubscribe() {
    if (current && current.kind === 'eventsource') current.source.close();
    if (current && current.kind === 'fetch') current.controller.abort();
    current = null;
    setState('closed');
    $('subscribe-button').textContent = 'Subscribe';
  }

  $('subscribe-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (current) unsubscribe();
    else subscribe();
  });
  for (const id of ['sub-topics', 'sub-match-type', 'sub-jwt']) {
    $(id).addEventListener('input', refreshPlan);
    $(id).addEventListener('change', refreshPlan);
  }

  $('clear-events').addEventListener('click', () => {
    $('events').replaceChildren();
    eventCount = 0;
    $('event-count').textContent = '(0)';
    $('events-empty').hidden = false;
  });

  // --- publish --------------------------------------------------------------------------------

  $('publish-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const result = $('publish-result');
    const status = $('publish-status');
    const body = $('publish-body');
    showAuthenticate($('publish-www-authenticate'), null);
    const topics = lines($('pub-topics').value);
    if (topics.length === 0) {
      result.hidden = false;
      result.dataset.ok = 'false';
      status.textContent = 'Not sent';
      body.textContent = 'Enter at least one topic.';
      $('pub-topics').focus();
      return;
    }
    const form = new URLSearchParams();
    for (const topic of topics) form.append('topic', topic);
    form.append('data', $('pub-data').value);
    for (const name of ['id', 'type', 'retry']) {
      const value = $(`pub-${name}`).value.trim();
      if (value) form.append(name, value);
    }
    if ($('pub-private').checked) form.append('private', 'on');
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    const jwt = $('pub-jwt').value.trim();
    if (jwt) headers.authorization = `Bearer ${jwt}`;
    // A typed update reaches an EventSource only through a listener for that type.
    listenTo($('pub-type').value.trim());

    const button = $('publish-button');
    button.disabled = true;
    try {
      const response = await fetch(HUB, { method: 'POST', headers, body: form, credentials: 'same-origin' });
      const text = await response.text();
      result.dataset.ok = String(response.ok);
      status.textContent = response.ok ? `${statusLine(response)}: published, id below` : statusLine(response);
      showAuthenticate($('publish-www-authenticate'), response);
      body.textContent = text.trim() || '(empty body)';
    } catch (error) {
      result.dataset.ok = 'false';
      status.textContent = 'Request failed';
      body.textContent = error.message;
    } finally {
      result.hidden = false;
      button.disabled = false;
    }
  });

  // --- active subscriptions -------------------------------------------------------------------

  function renderSubscriptions(list) {
    const tbody = $('subscriptions-body');
    tbody.replaceChildren();
    for (const sub of list) {
      const row = element('tr');
      const cell = (text, className) => {
        const td = element('td', className);
        td.append(element('code', '', text));
        return td;
      };
      // Mercure 1.0 documents have `match` and `match_type`, draft-07 ones a `topic`.
      const selector = 'match' in sub ? cell(String(sub.match ?? '')) : cell(String(sub.topic ?? ''));
      if ('match' in sub) selector.prepend(element('span', 'badge', String(sub.match_type ?? '?')), ' ');
      row.append(
        cell(String(sub.id ?? ''), 'long'),
        selector,
        cell(String(sub.subscriber ?? '')),
        element('td', sub.active ? 'yes' : 'no', sub.active ? 'yes' : 'no'),
      );
      const payload = element('td');
      if (sub.payload === undefined || sub.payload === null) payload.textContent = '—';
      else payload.append(element('pre', 'payload', JSON.stringify(sub.payload, null, 2)));
      row.append(payload);
      tbody.append(row);
    }
    $('subscriptions-table').hidden = list.length === 0;
  }

  $('subscriptions-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const result = $('subscriptions-result');
    const status = $('subscriptions-status');
    const text = $('subscriptions-text');
    const table = $('subscriptions-table');
    const jwt = $('sub-jwt').value.trim();
    const token = tokenInfo(jwt);
    // The hub answers an access token in Mercure 1.0's shape, with its paths.
    const v1 = Boolean(token && token.protocol === V1);
    let path = '/.well-known/mercure/subscriptions';
    const topic = $('subs-topic').value.trim();
    if (topic && v1) path += `/${encodeURIComponent($('subs-match-type').value)}/${encodeURIComponent(topic)}`;
    else if (topic) path += `/${encodeURIComponent(topic)}`;
    const headers = { accept: 'application/ld+json, application/json' };
    if (jwt) headers.authorization = `Bearer ${jwt}`;
    showAuthenticate($('subscriptions-www-authenticate'), null);

    const button = $('subscriptions-button');
    button.disabled = true;
    result.hidden = false;
    result.dataset.ok = '';
    status.textContent = 'Loading…';
    table.hidden = true;
    text.hidden = true;
    $('subscriptions-raw').hidden = true;
    try {
      const response = await fetch(new URL(path, HUB), { headers, credentials: 'same-origin', cache: 'no-store' });
      const body = await response.text();
      result.dataset.ok = String(response.ok);
      showAuthenticate($('subscriptions-www-authenticate'), response);
      if (!response.ok) {
        let why = '';
        if (response.status === 404) {
          why = ' — this hub does not serve the subscriptions API: its “subscriptions” setting is off, or this version does not have it.';
        } else if (response.status === 401 || response.status === 403) {
          why = ' — fill the subscriber JWT with a token whose mercure.subscribe claim (draft-07) or subscribe ' +
            'details (Mercure 1.0 access token) allow the subscriptions URL (“*” does).';
        }
        status.textContent = `Error: ${statusLine(response)}${why}`;
        text.textContent = body.trim() || '(empty body)';
        text.hidden = false;
        return;
      }
      let json;
      try {
        json = JSON.parse(body);
      } catch (error) {
        status.textContent = `${statusLine(response)}, but the body is not JSON (${error.message})`;
        text.textContent = body;
        text.hidden = false;
        return;
      }
      // A collection, or (for a path that names a subscriber) one subscription.
      let list = [];
      if (Array.isArray(json.subscriptions)) list = json.subscriptions;
      else if (/^subscription$/i.test(json.type)) list = [json];
      const plural = list.length === 1 ? '' : 's';
      // draft-07 puts the cursor in the body; Mercure 1.0 in a quoted ETag (and a Link).
      const etag = response.headers.get('etag');
      let last = '';
      if (json.lastEventID) last = `, lastEventID ${json.lastEventID}`;
      else if (etag) last = `, cursor (ETag) ${etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1')}`;
      const shape = '@context' in json ? 'draft-07, JSON-LD' : 'Mercure 1.0, JSON';
      status.textContent = `${statusLine(response)}: ${list.length} active subscription${plural}${last} (${shape})`;
      renderSubscriptions(list);
      const contentType = response.headers.get('content-type') || 'no content type';
      $('subscriptions-raw-title').textContent = `Raw response (${contentType})`;
      $('subscriptions-json').textContent = JSON.stringify(json, null, 2);
      $('subscriptions-raw').hidden = false;
    } catch (error) {
      result.dataset.ok = 'false';
      status.textContent = `Request failed: ${error.message}`;
    } finally {
      result.hidden = false;
      button.disabled = false;
    }
  });

  // --- start ----------------------------------------------------------------------------------

  $('hub-url').textContent = HUB.href;
  refreshPlan();
  $('pub-jwt').addEventListener('input', () => {
    const kind = $('pub-jwt-kind');
    const info = tokenInfo($('pub-jwt').value.trim());
    kind.textContent = describeToken(info);
    kind.hidden = !info;
  });
  window.addEventListener('pagehide', () => {
    if (current) unsubscribe();
  });
})();
