// Elements, the banner, the confirmation dialog and the long-poll loop:
// what every page of the console draws with.

/** Pause before asking again after a failed request. */
const RETRY_MS = 2000;

/** An element with properties (or attributes), listeners and children. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'text') element.textContent = value;
    else if (name === 'class') element.className = value;
    else if (name in element && !name.includes('-')) element[name] = value;
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const $ = (selector) => document.querySelector(selector);
export const pretty = (value) => JSON.stringify(value, null, 2);
export const short = (value, length = 120) => {
  const text = JSON.stringify(value);
  return text.length > length ? `${text.slice(0, length)}…` : text;
};

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const woken = () => { clearTimeout(timer); resolve(); };
    const timer = setTimeout(() => { signal?.removeEventListener('abort', woken); resolve(); }, ms);
    signal?.addEventListener('abort', woken, { once: true });
  });
}

/** Shows an error in the banner; 401 and 403 say what to do about them. */
export function showError(error) {
  const banner = $('#banner');
  if (error.status === 401) {
    banner.className = 'auth';
    banner.textContent = `${error}. Enter a token at the top right.`;
  } else if (error.status === 403) {
    banner.className = 'auth';
    banner.textContent = `${error}. The token's roles do not allow this.`;
  } else {
    banner.className = 'error';
    banner.textContent = String(error);
  }
  banner.dataset.status = error.status ?? '';
  banner.hidden = false;
}

/** Set by a notice, so that the page drawn next keeps it on screen. */
let keepNotice = false;

export function showNotice(text) {
  keepNotice = true;
  const banner = $('#banner');
  banner.className = 'notice';
  banner.textContent = text;
  banner.dataset.status = '';
  banner.hidden = false;
}

/** Before a page is drawn: the banner goes, unless a notice was just shown. */
export function newPage() {
  if (keepNotice) keepNotice = false;
  else clearBanner();
}

/** The event that has the page on screen drawn again. */
export const REDRAW = 'kv-console-redraw';

/** Draws the page on screen again, from the node's answers. */
export function redraw() {
  window.dispatchEvent(new Event(REDRAW));
}

export function clearBanner() {
  $('#banner').hidden = true;
}

/** Asks the user to confirm a deletion. */
export function confirmDelete(text) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/**
 * Runs `step` again and again until `signal` aborts (the user left the
 * page): each step is one long-poll, so this asks only when something
 * changed. A failed step is shown and retried after a pause.
 */
export async function keepPolling(signal, step) {
  while (!signal.aborted) {
    try {
      await step();
      markLoaded(signal, 'true');
    } catch (error) {
      if (signal.aborted || error.name === 'AbortError') return;
      showError(error);
      if ($('#page').dataset.loaded === 'false') markLoaded(signal, 'error');
      await sleep(RETRY_MS, signal);
    }
  }
}

/**
 * Says whether the page on screen was drawn from its first answers
 * (`data-loaded="true"`) or failed to be (`"error"`), for whoever waits
 * for it (the browser test).
 */
export function markLoaded(signal, outcome) {
  if (!signal.aborted) $('#page').dataset.loaded = outcome;
}
