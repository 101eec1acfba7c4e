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

  // --- subscribe ------------------------------------------------------------------------------

  let source = null;
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

  function subscriptionUrl() {
    const url = new URL(HUB);
    for (const topic of lines($('sub-topics').value)) url.searchParams.append('topic', topic);
    const jwt = $('sub-jwt').value.trim();
    if (jwt) url.searchParams.set('authorization', jwt);
    const lastEventId = $('sub-last-event-id').value.trim();
    if (lastEventId) url.searchParams.set('lastEventID', lastEventId);
    return url;
  }

  function addEvent(event) {
    const item = element('li', 'event');
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

  /** Receives events of `type` on the open EventSource (EventSource needs one listener a type). */
  function listenTo(type) {
    if (!source || !type || listenedTypes.has(type)) return;
    listenedTypes.add(type);
    source.addEventListener(type, addEvent);
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
      const body = (await response.text()).trim();
      return `the hub answered ${statusLine(response)}${body ? ` — ${body}` : ''}`;
    } catch (error) {
      return error.name === 'AbortError' ? 'no answer from the hub' : `cannot reach the hub (${error.message})`;
    } finally {
      clearTimeout(timer);
    }
  }

  function subscribe() {
    const topics = lines($('sub-topics').value);
    if (topics.length === 0) {
      showSubscribeError('Enter at least one topic selector.');
      $('sub-topics').focus();
      return;
    }
    showSubscribeError('');
    const url = subscriptionUrl();
    source = new EventSource(url.href);
    listenedTypes = new Set();
    listenTo('message');
    for (const type of $('sub-types').value.split(',')) listenTo(type.trim());
    setState('connecting');
    $('subscribe-button').textContent = 'Unsubscribe';
    source.onopen = () => {
      setState('open');
      showSubscribeError('');
    };
    const current = source;
    source.onerror = async () => {
      if (current !== source) return;
      if (current.readyState === EventSource.CLOSED) {
        // A refusal (401, 403, 400…) or a bad response: EventSource gives up.
        setState('error', 'closed by the hub');
        $('subscribe-button').textContent = 'Subscribe';
        source = null;
        showSubscribeError(`Subscription failed: ${await explainFailure(url)}.`);
      } else {
        setState('connecting', 'reconnecting after an error');
      }
    };
  }

  function unsubscribe() {
    if (source) source.close();
    source = null;
    setState('closed');
    $('subscribe-button').textContent = 'Subscribe';
  }

  $('subscribe-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (source) unsubscribe();
    else subscribe();
  });

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
      row.append(
        cell(String(sub.id ?? ''), 'long'),
        cell(String(sub.topic ?? '')),
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
    let path = '/.well-known/mercure/subscriptions';
    const topic = $('subs-topic').value.trim();
    if (topic) path += `/${encodeURIComponent(topic)}`;
    const headers = { accept: 'application/ld+json, application/json' };
    const jwt = $('sub-jwt').value.trim();
    if (jwt) headers.authorization = `Bearer ${jwt}`;

    const button = $('subscriptions-button');
    button.disabled = true;
    result.hidden = false;
    result.dataset.ok = '';
    status.textContent = 'Loading…';
    table.hidden = true;
    text.hidden = true;
    $('subscriptions-raw').hidden = true;
    try {
      const response = await fetch(new URL(path, HUB), { headers, credentials: 'same-origin' });
      const body = await response.text();
      result.dataset.ok = String(response.ok);
      if (!response.ok) {
        let why = '';
        if (response.status === 404) {
          why = ' — this hub does not serve the subscriptions API: its “subscriptions” setting is off, or this version does not have it.';
        } else if (response.status === 401 || response.status === 403) {
          why = ' — fill the subscriber JWT with a token whose mercure.subscribe allows the subscriptions URL (“*” does).';
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
      const list = Array.isArray(json.subscriptions) ? json.subscriptions : [];
      const plural = list.length === 1 ? '' : 's';
      const last = json.lastEventID ? `, lastEventID ${json.lastEventID}` : '';
      status.textContent = `${statusLine(response)}: ${list.length} active subscription${plural}${last}`;
      renderSubscriptions(list);
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
  window.addEventListener('pagehide', () => {
    if (source) source.close();
  });
})();
