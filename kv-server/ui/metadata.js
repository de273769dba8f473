// Topics and subscription groups: tables with search, and forms drawn
// from their JSON Schema, checked before they are sent, with the node's
// refusals shown at the field they name.

import { call, enc, listAll } from './api.js';
import { h, pretty, showNotice } from './dom.js';
import { choices, resolve, validate } from './schema.js';

export const TOPICS = {
  page: 'topics',
  title: 'Topics',
  noun: 'topic',
  path: '/v1/topics',
  list: 'topics',
  name: 'topicName',
  schema: 'schemas/topic-config.schema.json',
  columns: ['topicName', 'readQueueNums', 'writeQueueNums', 'perm', 'order', 'topicFilterType'],
};

export const SUBSCRIPTIONS = {
  page: 'subscriptions',
  title: 'Subscription groups',
  noun: 'subscription group',
  path: '/v1/subscriptions',
  list: 'subscriptions',
  name: 'groupName',
  schema: 'schemas/subscription-group-config.schema.json',
  columns: ['groupName', 'consumeEnable', 'consumeBroadcastEnable', 'consumeMessageOrderly', 'retryQueueNums', 'retryMaxTimes'],
};

export async function metadataPage(kind, main, query, signal) {
  main.append(h('h1', { text: kind.title }));
  const editing = query.get('edit');
  if (query.has('new') || editing !== null) {
    await metadataForm(kind, main, editing, signal);
    return;
  }
  const search = h('input', { id: 'search', type: 'search', placeholder: `search ${kind.noun}s by name` });
  const body = h('tbody', { id: 'metadata-rows' });
  main.append(
    h('div', { class: 'row' }, search,
      h('a', { class: 'button', href: `#/${kind.page}?new=1`, id: 'new-metadata', text: `New ${kind.noun}` })),
    h('table', {}, h('thead', {}, h('tr', {}, kind.columns.map((column) => h('th', { text: column })))), body));
  const { items, truncated } = await listAll(kind.path, kind.list, (item) => item[kind.name], signal);
  const rows = items.map((item) => {
    const name = item[kind.name];
    return h('tr', { 'data-name': name }, kind.columns.map((column) => (column === kind.name
      ? h('td', {}, h('a', { href: `#/${kind.page}?edit=${enc(name)}`, text: name }))
      : h('td', { class: 'num', text: String(item[column] ?? '') }))));
  });
  body.append(...rows);
  if (items.length === 0) body.append(h('tr', {}, h('td', { colSpan: kind.columns.length, class: 'muted', text: `No ${kind.noun}s yet.` })));
  if (truncated) main.append(h('p', { class: 'muted', text: `Only the first ${items.length} are shown.` }));
  search.addEventListener('input', () => {
    const needle = search.value.trim().toLowerCase();
    for (const row of rows) row.hidden = !row.dataset.name.toLowerCase().includes(needle);
  });
}

/** One input per top-level property of the schema, holding `value`. */
function schemaField(root, name, property, value, readOnly) {
  const rule = resolve(root, property);
  const allowed = choices(rule);
  const id = `field-${name}`;
  let input;
  let read;
  if (allowed) {
    input = h('select', { id, name }, allowed.map((option) => h('option', { value: option, text: option })));
    input.value = value ?? property.default ?? allowed[0];
    read = () => input.value;
  } else if (rule.type === 'boolean') {
    input = h('input', { id, name, type: 'checkbox', checked: Boolean(value ?? property.default) });
    read = () => input.checked;
  } else if (rule.type === 'integer') {
    input = h('input', { id, name, type: 'text', inputMode: 'numeric', value: value ?? property.default ?? '' });
    read = () => (/^[+-]?\d+$/.test(input.value.trim()) ? Number(input.value.trim()) : input.value);
  } else if (rule.type === 'string') {
    input = h('input', { id, name, type: 'text', value: value ?? '', readOnly });
    read = () => input.value;
  } else {
    const empty = rule.type === 'array' ? [] : {};
    input = h('textarea', { id, name, rows: 3, value: pretty(value ?? property.default ?? empty) });
    read = () => {
      try {
        return JSON.parse(input.value);
      } catch (error) {
        return new SyntaxError(`${name} is not JSON: ${error.message}`);
      }
    };
  }
  const error = h('span', { class: 'field-error', id: `${id}-error` });
  const wrapper = h('div', { class: input.tagName === 'TEXTAREA' ? 'field wide' : 'field', 'data-field': name },
    h('label', { for: id, text: name }), input,
    h('span', { class: 'hint', text: (property.description ?? rule.description ?? '').replace(/\s+/g, ' ') }), error);
  return { name, wrapper, read, error };
}

async function metadataForm(kind, main, editing, signal) {
  const root = (await call('GET', kind.schema, { signal })).data;
  let current = {};
  let condition = { 'If-None-Match': '*' };
  if (editing !== null) {
    const { data, headers } = await call('GET', `${kind.path}/${enc(editing)}`, { signal });
    current = data;
    condition = { 'If-Match': headers.get('ETag') };
  }
  const fields = Object.keys(root.properties)
    .map((name) => schemaField(root, name, root.properties[name], current[name], editing !== null && name === kind.name));
  // The name first, the JSON fields last, the rest as the schema lists them.
  const place = (field) => (field.name === kind.name ? 0 : field.wrapper.classList.contains('wide') ? 2 : 1);
  fields.sort((a, b) => place(a) - place(b));
  const formError = h('p', { class: 'form-error', id: 'form-error' });
  const showProblems = (problems) => {
    for (const field of fields) {
      field.error.textContent = '';
      field.wrapper.classList.remove('invalid');
    }
    formError.textContent = '';
    for (const problem of problems) {
      const top = (problem.path ?? '').split(/[.[]/)[0];
      const field = fields.find((candidate) => candidate.name === top);
      if (field) {
        field.error.textContent = field.error.textContent ? `${field.error.textContent}; ${problem.message}` : problem.message;
        field.wrapper.classList.add('invalid');
      } else {
        formError.textContent = problem.message;
      }
    }
  };
  const submit = async (event) => {
    event.preventDefault();
    // Fields the form does not show (RocketMQ's own extras) are kept.
    const value = { ...current };
    const problems = [];
    for (const field of fields) {
      const read = field.read();
      if (read instanceof Error) problems.push({ path: field.name, message: read.message });
      else if (read === '' && field.name !== kind.name) delete value[field.name];
      else value[field.name] = read;
    }
    problems.push(...validate(root, root, value, ''));
    showProblems(problems);
    if (problems.length > 0) return;
    const name = value[kind.name];
    try {
      const { data } = await call('PUT', `${kind.path}/${enc(name)}`, { body: value, headers: condition });
      showNotice(`Saved ${kind.noun} ${name} at revision ${data.revision}.`);
      location.hash = `#/${kind.page}`;
    } catch (error) {
      if (error.code === 'precondition_failed') {
        showProblems([{ message: editing === null
          ? `A ${kind.noun} named ${name} exists already: edit it from the list.`
          : `Conflict: ${name} changed since you opened it. Nothing was written; reopen it to see the new values.` }]);
      } else {
        // The node names the field it refused, as the schema does.
        showProblems([{ path: error.field, message: String(error) }]);
      }
    }
  };
  main.append(
    h('h2', { text: editing === null ? `New ${kind.noun}` : `${kind.noun} ${editing}` }),
    h('form', { class: 'fields', id: 'metadata-form', noValidate: true, onsubmit: submit },
      fields.map((field) => field.wrapper),
      h('div', { class: 'actions' },
        h('button', { id: 'save-metadata', text: editing === null ? 'Create' : 'Save' }),
        h('a', { class: 'button secondary', href: `#/${kind.page}`, text: 'Cancel' }))),
    formError);
}
