// The cluster as one node sees it: leader, term, indexes, members and
// their lag, redrawn by long-poll whenever it moves.

import { call, LONG_POLL } from './api.js';
import { clearBanner, h, keepPolling, sleep } from './dom.js';

/**
 * The shortest time between two redraws: one write moves the state
 * several times (appended, replicated, applied), and on a follower each
 * answer asks the leader for the members' progress.
 */
const MIN_REDRAW_MS = 500;

function tile(label, figure, id) {
  return h('div', { class: 'tile' }, h('div', { class: 'label', text: label }), h('div', { class: 'figure', id, text: figure ?? '—' }));
}

export async function clusterPage(main, query, signal) {
  const view = h('div', { id: 'cluster-view' });
  const updated = h('p', { class: 'muted', id: 'cluster-updated' });
  main.append(h('h1', { text: 'Cluster' }), updated, view);
  let index = null;
  await keepPolling(signal, async () => {
    const path = index === null ? '/v1/cluster' : `/v1/cluster?index=${index}&wait=${LONG_POLL}`;
    const { data, headers } = await call('GET', path, { signal });
    // An opaque digest of the state, up to 2^63: kept as text, since a
    // JavaScript number would round it.
    index = headers.get('X-Kv-Index');
    clearBanner();
    updated.textContent = `As node ${data.node_id} sees it, ${new Date().toLocaleTimeString()}; refreshed by long-poll when anything moves.`;
    const alarms = data.alarms ?? [];
    view.replaceChildren(
      h('div', { class: 'tiles' },
        tile('Leader', data.leader === null ? 'none' : `node ${data.leader}`, 'cluster-leader'),
        tile('Term', data.term),
        tile('This node', `${data.node_id} (${data.state})`),
        tile('Revision', data.revision),
        tile('Applied index', data.applied_index, 'cluster-applied'),
        tile('Committed index', data.committed_index),
        tile('Last log index', data.last_log_index),
        tile('Snapshot index', data.snapshot_index),
        tile('Alarms', alarms.length ? alarms.map((alarm) => `${alarm.alarm} on ${alarm.member}`).join(', ') : 'none'),
        tile('Version', data.version)),
      h('table', { id: 'members' },
        h('thead', {}, h('tr', {}, ['id', 'role', 'voter', 'client URL', 'peer URL', 'matched index', 'lag'].map((text) => h('th', { text })))),
        h('tbody', {}, data.members.map((member) => h('tr', { class: member.role === 'leader' ? 'leader' : '', 'data-member': member.id },
          h('td', { class: 'num', text: member.id }),
          h('td', { class: 'role', text: member.role === 'leader' ? '★ leader' : member.role }),
          h('td', { text: member.voter ? 'yes' : 'no' }),
          h('td', { text: member.addr }),
          h('td', { text: member.peer_addr }),
          h('td', { class: 'num', text: member.matched_index ?? '—' }),
          h('td', { class: 'num', text: member.lag ?? '—' }))))),
      h('p', { class: 'muted', text: `Cluster id ${data.cluster_id ?? 'not yet known'}.` }));
    await sleep(MIN_REDRAW_MS, signal);
  });
}
