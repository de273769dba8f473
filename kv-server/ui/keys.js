// Keys: browse by prefix as a tree, show a value with its revisions,
// edit it on condition of its mod_revision, delete it after a confirmation.

import { call, enc, kvPath, listAll } from './api.js';
import { confirmDelete, h, pretty, redraw, showNotice } from './dom.js';

export const keysHref = (prefix, key) => {
  const query = new URLSearchParams({ prefix });
  if (key !== undefined) query.set('key', key);
  return `#/keys?${query}`;
};

export async function keysPage(main, query, signal) {
  const prefix = query.get('prefix') ?? '';
  const selected = query.get('key');
  const crumbs = h('nav', { class: 'crumbs' }, h('a', { href: keysHref(''), text: 'all keys' }));
  let under = '';
  for (const part of prefix.split('/').filter(Boolean)) {
    under += `${part}/`;
    crumbs.append(' / ', h('a', { href: keysHref(under), text: part }));
  }
  const prefixInput = h('input', { id: 'prefix', value: prefix, placeholder: 'prefix, e.g. app/' });
  const browse = h('form', {
    class: 'row',
    onsubmit: (event) => { event.preventDefault(); location.hash = keysHref(prefixInput.value); },
  }, prefixInput, h('button', { text: 'Browse' }));
  const tree = h('ul', { class: 'tree', id: 'key-tree' });
  const detail = h('section', { class: 'detail', id: 'key-detail' });
  main.append(h('h1', { text: 'Keys' }), crumbs, browse,
    h('div', { class: 'split' }, h('section', { class: 'card' }, tree, newKeyForm(prefix)), detail));

  const { items, truncated } = await listAll(`/v1/kv?prefix=${enc(prefix)}`, 'entries', (entry) => entry.key, signal);
  // A tree: the next path segment of each key under the prefix.
  const folders = new Map();
  const leaves = [];
  for (const entry of items) {
    const rest = entry.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash >= 0 && slash < rest.length - 1) {
      const folder = prefix + rest.slice(0, slash + 1);
      folders.set(folder, (folders.get(folder) ?? 0) + 1);
    } else {
      leaves.push(entry);
    }
  }
  for (const [folder, count] of folders) {
    tree.append(h('li', { class: 'folder' },
      h('a', { href: keysHref(folder), text: folder.slice(prefix.length) }), ' ',
      h('span', { class: 'muted', text: `${count} key${count === 1 ? '' : 's'}` })));
  }
  for (const entry of leaves) {
    tree.append(h('li', { class: entry.key === selected ? 'key selected' : 'key', 'data-key': entry.key },
      h('a', { href: keysHref(prefix, entry.key), text: entry.key.slice(prefix.length) || entry.key })));
  }
  if (items.length === 0) tree.append(h('li', { class: 'muted', text: 'No keys under this prefix.' }));
  if (truncated) tree.append(h('li', { class: 'muted', text: `Only the first ${items.length} keys are shown: browse a longer prefix.` }));
  if (selected !== null) await showKey(detail, prefix, selected, signal);
}

/**
 * The JSON value typed in `textarea`; `undefined`, with the reason in
 * `error`, when it is not JSON.
 */
function readJson(textarea, error) {
  error.textContent = '';
  try {
    return JSON.parse(textarea.value);
  } catch (parse) {
    error.textContent = `The value is not JSON: ${parse.message}`;
    return undefined;
  }
}

function newKeyForm(prefix) {
  const key = h('input', { id: 'new-key', value: prefix, placeholder: 'key' });
  const value = h('textarea', { id: 'new-value', rows: 3, placeholder: 'a JSON value, e.g. {"retention": "7d"}' });
  const error = h('p', { class: 'form-error', id: 'new-key-error' });
  return h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      const body = readJson(value, error);
      if (body === undefined) return;
      try {
        await call('PUT', kvPath(key.value), { body, headers: { 'If-None-Match': '*' } });
        location.hash = keysHref(prefix, key.value);
      } catch (failure) {
        error.textContent = failure.code === 'precondition_failed'
          ? `${key.value} exists already: open it to edit it.`
          : String(failure);
      }
    },
  }, h('h2', { text: 'New key' }), h('div', { class: 'row' }, key), value, error,
  h('div', { class: 'row' }, h('button', { text: 'Create' })));
}

async function showKey(detail, prefix, key, signal) {
  let found;
  try {
    found = await call('GET', kvPath(key), { signal });
  } catch (error) {
    if (error.code !== 'key_not_found') throw error;
    detail.append(h('h2', { text: key }), h('p', { class: 'muted', text: 'This key does not exist (any more).' }));
    return;
  }
  const entry = found.data;
  const typed = key.startsWith('topics/') || key.startsWith('subscriptions/');
  detail.append(
    h('h2', { text: key }),
    h('dl', { class: 'meta' },
      h('dt', { text: 'mod_revision' }), h('dd', { id: 'mod-revision', text: entry.mod_revision }),
      h('dt', { text: 'create_revision' }), h('dd', { text: entry.create_revision }),
      h('dt', { text: 'version' }), h('dd', { text: entry.version }),
      entry.lease ? [h('dt', { text: 'lease' }), h('dd', { text: entry.lease })] : null),
    h('pre', { class: 'json', id: 'key-value', text: pretty(entry.value) }));
  if (typed) {
    const page = key.startsWith('topics/') ? 'topics' : 'subscriptions';
    detail.append(h('p', { class: 'muted' }, 'Typed metadata: edit it on the ',
      h('a', { href: `#/${page}`, text: page === 'topics' ? 'Topics' : 'Subscription groups' }), ' page.'));
    return;
  }
  const editor = h('textarea', { id: 'value-editor', rows: 10, value: pretty(entry.value) });
  const error = h('p', { class: 'form-error', id: 'key-error' });
  const condition = { 'If-Match': `"${entry.mod_revision}"` };
  const save = async (event) => {
    event.preventDefault();
    const body = readJson(editor, error);
    if (body === undefined) return;
    try {
      const { data } = await call('PUT', kvPath(key), { body, headers: condition });
      showNotice(`Saved ${key} at revision ${data.revision}.`);
      redraw();
    } catch (failure) {
      error.textContent = failure.code === 'precondition_failed'
        ? `Conflict: ${key} changed since you read it at revision ${entry.mod_revision}. `
          + 'Nothing was written; reload the key to see its new value, then edit again.'
        : String(failure);
    }
  };
  const remove = async () => {
    error.textContent = '';
    if (!await confirmDelete(`Delete ${key}? Watchers see a delete; the topic keeps a tombstone.`)) return;
    try {
      await call('DELETE', kvPath(key), { headers: condition });
      showNotice(`Deleted ${key}.`);
      location.hash = keysHref(prefix);
    } catch (failure) {
      error.textContent = failure.code === 'precondition_failed'
        ? `Conflict: ${key} changed since revision ${entry.mod_revision}; nothing was deleted.`
        : String(failure);
    }
  };
  detail.append(h('form', { onsubmit: save },
    h('h2', { text: 'Edit' }), editor, error,
    h('div', { class: 'row' },
      h('button', { id: 'save-key', text: `Save if still at revision ${entry.mod_revision}` }),
      h('button', { type: 'button', class: 'secondary', text: 'Reload', onclick: redraw }),
      h('button', { type: 'button', class: 'danger', id: 'delete-key', text: 'Delete…', onclick: remove }))));
}
