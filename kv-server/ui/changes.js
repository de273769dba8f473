// The change feed, live: records arrive by long-poll and are shown newest
// first.

import { call, LONG_POLL } from './api.js';
import { clearBanner, h, keepPolling, markLoaded, short, showError } from './dom.js';
import { keysHref } from './keys.js';

/** Rows the change feed keeps on screen. */
const MAX_CHANGES = 500;

function changeRow(record) {
  return h('tr', { class: 'fresh', 'data-key': record.key },
    h('td', { text: new Date(record.timestamp_ms).toLocaleTimeString() }),
    h('td', { class: 'num', text: record.revision }),
    h('td', { class: 'num', text: record.offset }),
    h('td', {}, h('a', { href: keysHref('', record.key), text: record.key })),
    h('td', { text: record.deleted ? 'delete' : 'put' }),
    h('td', { class: 'value', text: record.deleted ? '' : short(record.value) }));
}

export async function changesPage(main, query, signal) {
  const prefix = query.get('prefix') ?? '';
  const prefixInput = h('input', { id: 'changes-prefix', value: prefix, placeholder: 'only keys under a prefix' });
  const status = h('p', { class: 'muted', id: 'changes-status' });
  const rows = h('tbody', { id: 'change-rows' });
  main.append(h('h1', { text: 'Changes' }),
    h('form', {
      class: 'row',
      onsubmit: (event) => { event.preventDefault(); location.hash = `#/changes?${new URLSearchParams({ prefix: prefixInput.value })}`; },
    }, prefixInput, h('button', { text: 'Filter' }), h('a', { href: `#/changes?${new URLSearchParams({ prefix, from: 0 })}`, text: 'from the start of the topic' })),
    status,
    h('table', {}, h('thead', {}, h('tr', {}, ['time', 'revision', 'offset', 'key', '', 'value'].map((text) => h('th', { text })))), rows));
  let from = query.has('from') ? Number(query.get('from')) : null;
  await keepPolling(signal, async () => {
    if (from === null) from = (await call('GET', '/v1/cluster', { signal })).data.revision;
    status.textContent = `Live: waiting for changes after revision ${from}${prefix ? ` under ${prefix}` : ''}.`;
    status.dataset.from = from;
    // Drawn: what follows waits for the next change.
    markLoaded(signal, 'true');
    let page;
    try {
      page = (await call('GET', `/v1/changes?${new URLSearchParams({ from, prefix, wait: LONG_POLL })}`, { signal })).data;
    } catch (error) {
      if (error.code !== 'below_tombstone_floor') throw error;
      showError(error);
      from = null;
      return;
    }
    clearBanner();
    for (const record of page.records) rows.prepend(changeRow(record));
    while (rows.children.length > MAX_CHANGES) rows.lastElementChild.remove();
    from = page.next;
  });
}
