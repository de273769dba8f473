// The name server's state: the brokers that registered, live, and the
// route of a topic.

import { call, enc, LONG_POLL } from './api.js';
import { h, keepPolling, pretty } from './dom.js';

export async function brokersPage(main, query, signal) {
  const topic = query.get('topic') ?? '';
  const topicInput = h('input', { id: 'route-topic', value: topic, placeholder: 'topic' });
  const brokers = h('div', { id: 'brokers' });
  const route = h('div', { id: 'route' });
  main.append(h('h1', { text: 'Brokers and routes' }),
    h('p', { class: 'muted', text: 'What brokers registered with the name server (RocketMQ remoting, port 9876 by default), live.' }),
    brokers,
    h('h2', { text: 'Route of a topic' }),
    h('form', {
      class: 'row',
      onsubmit: (event) => { event.preventDefault(); location.hash = `#/brokers?${new URLSearchParams({ topic: topicInput.value })}`; },
    }, topicInput, h('button', { text: 'Look up' })),
    route);
  if (topic) {
    try {
      const { data } = await call('GET', `/v1/routes/${enc(topic)}`, { signal });
      route.append(
        h('table', {}, h('thead', {}, h('tr', {}, ['broker', 'read queues', 'write queues', 'perm'].map((text) => h('th', { text })))),
          h('tbody', {}, (data.queueDatas ?? []).map((queue) => h('tr', {},
            h('td', { text: queue.brokerName }), h('td', { class: 'num', text: queue.readQueueNums }),
            h('td', { class: 'num', text: queue.writeQueueNums }), h('td', { class: 'num', text: queue.perm }))))),
        h('details', {}, h('summary', { text: "RocketMQ's TopicRouteData" }), h('pre', { class: 'json', text: pretty(data) })));
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      // No route (404) is an answer; anything else is this lookup's
      // failure, shown here, and the brokers below still go on.
      route.append(error.status === 404
        ? h('p', { class: 'muted', text: error.message })
        : h('p', { class: 'form-error', text: String(error) }));
    }
  }
  let index = null;
  await keepPolling(signal, async () => {
    const path = index === null ? '/v1/brokers' : `/v1/brokers?index=${index}&wait=${LONG_POLL}`;
    const { data, headers } = await call('GET', path, { signal });
    index = headers.get('X-Kv-Revision');
    const rows = [];
    for (const [cluster, names] of Object.entries(data.clusterAddrTable ?? {})) {
      for (const name of names) {
        const broker = data.brokerAddrTable?.[name] ?? {};
        for (const [id, addr] of Object.entries(broker.brokerAddrs ?? {})) {
          rows.push(h('tr', {}, h('td', { text: cluster }), h('td', { text: name }), h('td', { class: 'num', text: id }), h('td', { text: addr })));
        }
      }
    }
    brokers.replaceChildren(rows.length === 0
      ? h('p', { class: 'muted', text: 'No broker is registered.' })
      : h('table', {}, h('thead', {}, h('tr', {}, ['cluster', 'broker', 'id', 'address'].map((text) => h('th', { text })))), h('tbody', {}, rows)));
  });
}
