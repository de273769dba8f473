// The console of openmessaging-kv: one page per area of the HTTP API,
// chosen by the URL's hash (#/keys, #/topics, ...). It calls only the
// node that served it, with the token the user gave, if any.

import { TOKEN_KEY } from './api.js';
import { brokersPage } from './brokers.js';
import { changesPage } from './changes.js';
import { clusterPage } from './cluster.js';
import { $, markLoaded, newPage, REDRAW, showError } from './dom.js';
import { keysPage } from './keys.js';
import { metadataPage, SUBSCRIPTIONS, TOPICS } from './metadata.js';

const PAGES = {
  keys: keysPage,
  topics: (...args) => metadataPage(TOPICS, ...args),
  subscriptions: (...args) => metadataPage(SUBSCRIPTIONS, ...args),
  cluster: clusterPage,
  changes: changesPage,
  brokers: brokersPage,
};

/** The controller of the page on screen: aborting it ends its requests. */
let onScreen = null;

/** Draws the page the hash names; a notice just shown stays. */
function route() {
  const [path, search] = location.hash.replace(/^#\/?/, '').split('?');
  const name = Object.hasOwn(PAGES, path) ? path : 'keys';
  onScreen?.abort();
  onScreen = new AbortController();
  const { signal } = onScreen;
  newPage();
  for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('active', link.dataset.page === name);
  const main = $('#page');
  main.replaceChildren();
  main.dataset.page = name;
  main.dataset.loaded = 'false';
  PAGES[name](main, new URLSearchParams(search ?? ''), signal)
    .then(() => markLoaded(signal, 'true'))
    .catch((error) => {
      if (error.name === 'AbortError') return;
      showError(error);
      markLoaded(signal, 'error');
    });
}

function showTokenState() {
  const form = $('#token-form');
  const set = Boolean(sessionStorage.getItem(TOKEN_KEY));
  form.classList.toggle('set', set);
  $('#token').placeholder = set ? 'token in use' : 'with --auth';
}

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('#token').value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  $('#token').value = '';
  showTokenState();
  route();
});
$('#token-forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
  route();
});
window.addEventListener('hashchange', route);
window.addEventListener(REDRAW, route);
showTokenState();
route();
