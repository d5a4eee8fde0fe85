/*
 * Comments widget, running inside the iframe that embed.js creates.
 *
 * The config comes from the URL fragment as URL-encoded JSON: forum, identifier, url,
 * title, theme ('auto' | 'light' | 'dark'), colorScheme (the host's current
 * prefers-color-scheme), language and parentOrigin. The widget talks to the JSON API
 * of its own origin under /api/v1 and keeps edit tokens, the guest name and the voter
 * id in this origin's localStorage, never in cookies.
 *
 * Names and every other server string are rendered with textContent. Only a post's
 * `message`, which the server sanitizes, is parsed as HTML, and it is filtered again
 * here against a short allowlist before it reaches the page.
 */
(function () {
  'use strict';

  const API_BASE = '/api/v1';
  const SORTS = ['best', 'newest', 'oldest'];
  const PAGE_SIZE = 20;
  // Depth from which replies stop indenting and are hidden behind "Continue this thread".
  const MAX_INDENT_DEPTH = 5;
  const STORAGE_PREFIX = 'comments:';
  // Upper bound on remembered own votes, so localStorage does not grow without limit.
  const MAX_STORED_VOTES = 1000;
  const CLOCK_TICK_MS = 20000;

  // The parent's postMessage may be replaced by a script on a same-origin host page,
  // so the widget calls its own realm's function with the parent window as `this`.
  const nativePostMessage = window.postMessage;
  const root = document.getElementById('cm-root');
  const locale = window.CommentsLocale;

  const config = parseConfig(location.hash);
  const t = locale.createTranslator((config && config.language) || navigator.language);
  const relativeTimeFormat = new Intl.RelativeTimeFormat(t.language, { numeric: 'auto' });
  const exactTimeFormat = new Intl.DateTimeFormat(t.language, { dateStyle: 'long', timeStyle: 'short' });
  const clockFormat = new Intl.DateTimeFormat(t.language, { hour: 'numeric', minute: '2-digit' });

  const state = {
    thread: null,
    sort: 'best',
    cursor: null,
    hasMore: false,
    generation: 0,
    // Difference between the server clock (from the Date header) and this one, in ms.
    clockOffset: 0,
    colorScheme: config ? config.colorScheme : 'light'
  };
  // Post id -> { post, li, depth, replyingTo, expanded, editable, expiryTimer } for
  // every rendered post.
  const entries = new Map();
  const ui = {};
  let idCounter = 0;

  /* ---------- configuration and storage ---------- */

  function readText(value, maxLength) {
    return typeof value === 'string' && value !== '' ? value.slice(0, maxLength) : null;
  }

  /* Return the validated config from the URL fragment, or null when it is unusable. */
  function parseConfig(hash) {
    let raw;
    try {
      raw = JSON.parse(decodeURIComponent(hash.replace(/^#/, '')));
    } catch (error) {
      return null;
    }
    if (!raw || typeof raw !== 'object' || !readText(raw.forum, 200)) return null;
    // The server builds this page's frame-ancestors policy from the forum in the query
    // string, so a fragment naming another forum would borrow that forum's policy.
    const queryForum = new URLSearchParams(location.search).get('forum');
    if (queryForum !== raw.forum) return null;

    // The browser's ancestorOrigins cannot be forged by the embedding page, unlike the
    // parentOrigin field, so it wins where the browser provides it.
    let parentOrigin = readText(raw.parentOrigin, 300);
    if (location.ancestorOrigins && location.ancestorOrigins.length > 0) {
      parentOrigin = location.ancestorOrigins[0];
    }
    if (parentOrigin && !/^https?:\/\/[^/\s]+$/.test(parentOrigin)) parentOrigin = null;

    return {
      forum: readText(raw.forum, 200),
      identifier: readText(raw.identifier, 1000),
      url: readText(raw.url, 4000),
      title: readText(raw.title, 1000),
      theme: ['light', 'dark'].includes(raw.theme) ? raw.theme : 'auto',
      colorScheme: raw.colorScheme === 'dark' ? 'dark' : 'light',
      language: readText(raw.language, 35),
      parentOrigin: parentOrigin
    };
  }

  /* Key-value store on localStorage with JSON values. It falls back to memory when the
     browser blocks storage for third-party frames, so edits then last for one visit. */
  const storage = (function () {
    const memory = new Map();
    let backend = null;
    try {
      backend = window.localStorage;
      backend.setItem(STORAGE_PREFIX + 'probe', '1');
      backend.removeItem(STORAGE_PREFIX + 'probe');
    } catch (error) {
      backend = null;
    }
    return {
      // False when values last only until the page is closed or reloaded.
      persistent: backend !== null,
      get(key) {
        try {
          const raw = memory.has(key) ? memory.get(key) : backend && backend.getItem(STORAGE_PREFIX + key);
          return raw ? JSON.parse(raw) : null;
        } catch (error) {
          return null;
        }
      },
      set(key, value) {
        const raw = JSON.stringify(value);
        try {
          if (backend) {
            backend.setItem(STORAGE_PREFIX + key, raw);
            return;
          }
        } catch (error) {
          // Quota exceeded or storage revoked: keep the value for this visit only.
        }
        memory.set(key, raw);
      }
    };
  })();

  function getVoterId() {
    let voter = storage.get('voter');
    if (typeof voter !== 'string' || voter.length < 16) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      voter = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
      storage.set('voter', voter);
    }
    return voter;
  }

  function readEditTokens() {
    const tokens = storage.get('edit-tokens');
    return tokens && typeof tokens === 'object' ? tokens : {};
  }

  function rememberEditToken(postId, token, until) {
    const tokens = readEditTokens();
    tokens[postId] = { token: token, until: until };
    storage.set('edit-tokens', tokens);
  }

  function forgetEditToken(postId) {
    const tokens = readEditTokens();
    delete tokens[postId];
    storage.set('edit-tokens', tokens);
  }

  /* Drop tokens whose edit window has closed. */
  function pruneEditTokens() {
    const tokens = readEditTokens();
    let changed = false;
    for (const postId of Object.keys(tokens)) {
      if (!(parseTime(tokens[postId].until) > serverNow())) {
        delete tokens[postId];
        changed = true;
      }
    }
    if (changed) storage.set('edit-tokens', tokens);
  }

  /* Return the edit token of an own post while its edit window is open, else null. */
  function editTokenFor(postId) {
    const entry = readEditTokens()[postId];
    if (!entry || typeof entry.token !== 'string') return null;
    return parseTime(entry.until) > serverNow() ? entry.token : null;
  }

  function readOwnVotes() {
    const votes = storage.get('votes');
    return votes && typeof votes === 'object' ? votes : {};
  }

  function rememberOwnVote(postId, value) {
    const votes = readOwnVotes();
    delete votes[postId];
    if (value !== 0) votes[postId] = value;
    const postIds = Object.keys(votes);
    for (let i = 0; i < postIds.length - MAX_STORED_VOTES; i++) delete votes[postIds[i]];
    storage.set('votes', votes);
  }

  /* ---------- time ---------- */

  /* Parse an ISO 8601 time from the API into epoch ms, or NaN. Fractions beyond
     milliseconds are cut because not every engine parses microseconds. */
  function parseTime(iso) {
    if (typeof iso !== 'string') return NaN;
    return Date.parse(iso.replace(/(\.\d{3})\d+/, '$1'));
  }

  function serverNow() {
    return Date.now() + state.clockOffset;
  }

  function updateClockOffset(response) {
    const serverDate = Date.parse(response.headers.get('Date') || '');
    if (!isNaN(serverDate)) state.clockOffset = serverDate - Date.now();
  }

  function formatRelativeTime(time) {
    const seconds = (time - serverNow()) / 1000;
    const absolute = Math.abs(seconds);
    if (absolute < 45 || seconds > 0) return t('justNow');
    const steps = [
      [3600, 60, 'minute'],
      [86400, 3600, 'hour'],
      [7 * 86400, 86400, 'day'],
      [30 * 86400, 7 * 86400, 'week'],
      [365 * 86400, 30 * 86400, 'month']
    ];
    for (const [limit, unitSeconds, unit] of steps) {
      if (absolute < limit) return relativeTimeFormat.format(-Math.max(1, Math.round(absolute / unitSeconds)), unit);
    }
    return relativeTimeFormat.format(-Math.round(absolute / (365 * 86400)), 'year');
  }

  function renderTime(iso) {
    const time = parseTime(iso);
    if (isNaN(time)) return null;
    return h('time', {
      class: 'cm-time',
      datetime: iso,
      title: exactTimeFormat.format(time),
      'data-time': String(time),
      text: formatRelativeTime(time)
    });
  }

  /* ---------- DOM helpers ---------- */

  /* Create an element. `text` sets textContent. Null, undefined and false attributes
     are left out, and true sets an empty attribute. */
  function h(tag, attributes, children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') element.textContent = value;
      else if (name === 'class') element.className = value;
      else element.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children || []) {
      if (child) element.append(child);
    }
    return element;
  }

  function uniqueId(prefix) {
    idCounter += 1;
    return 'cm-' + prefix + '-' + idCounter;
  }

  function announce(message) {
    ui.status.textContent = '';
    // A fresh text node makes screen readers announce a repeated message again.
    requestAnimationFrame(() => {
      ui.status.textContent = message;
    });
  }

  /* ---------- message HTML ---------- */

  const ALLOWED_TAGS = new Set([
    'A', 'B', 'BLOCKQUOTE', 'BR', 'CODE', 'DEL', 'EM', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'HR', 'I', 'IMG',
    'LI', 'OL', 'P', 'PRE', 'S', 'STRONG', 'SUB', 'SUP', 'TABLE', 'TBODY', 'TD', 'TH', 'THEAD', 'TR', 'UL'
  ]);
  // Elements removed together with their content. Other unknown elements are unwrapped.
  const DROPPED_TAGS = new Set([
    'SCRIPT', 'STYLE', 'IFRAME', 'FRAME', 'OBJECT', 'EMBED', 'SVG', 'MATH', 'TEMPLATE', 'NOSCRIPT',
    'FORM', 'INPUT', 'BUTTON', 'TEXTAREA', 'SELECT', 'LINK', 'META', 'BASE', 'VIDEO', 'AUDIO'
  ]);
  const ALLOWED_ATTRIBUTES = {
    A: ['href', 'title'], CODE: ['class'], IMG: ['src', 'alt', 'title'], OL: ['start'], TD: ['align'], TH: ['align']
  };
  const LINK_PROTOCOLS = ['http:', 'https:', 'mailto:'];
  const IMAGE_PROTOCOLS = ['http:', 'https:'];

  /* Filter a parsed message in place: keep allowlisted tags and attributes, and make
     links open in a new tab without access to this window. */
  function filterMessageNodes(parent) {
    for (const node of Array.from(parent.childNodes)) {
      if (node.nodeType === Node.TEXT_NODE) continue;
      if (node.nodeType !== Node.ELEMENT_NODE) {
        node.remove();
        continue;
      }
      const tag = node.nodeName.toUpperCase();
      if (DROPPED_TAGS.has(tag)) {
        node.remove();
        continue;
      }
      filterMessageNodes(node);
      if (!ALLOWED_TAGS.has(tag)) {
        node.replaceWith(...Array.from(node.childNodes));
        continue;
      }
      const allowed = ALLOWED_ATTRIBUTES[tag] || [];
      for (const attribute of Array.from(node.attributes)) {
        if (!allowed.includes(attribute.name)) node.removeAttribute(attribute.name);
      }
      if (tag === 'A') hardenLink(node);
      if (tag === 'IMG') hardenImage(node);
    }
  }

  /* Return the protocol of an absolute URL ("https:"), or null for anything else. */
  function urlProtocol(url) {
    if (url === null) return null;
    try {
      return new URL(url).protocol;
    } catch (error) {
      return null;
    }
  }

  function hardenLink(link) {
    if (!LINK_PROTOCOLS.includes(urlProtocol(link.getAttribute('href')))) link.removeAttribute('href');
    link.setAttribute('target', '_blank');
    link.setAttribute('rel', 'nofollow ugc noopener noreferrer');
  }

  function hardenImage(image) {
    if (!IMAGE_PROTOCOLS.includes(urlProtocol(image.getAttribute('src')))) {
      image.remove();
      return;
    }
    image.setAttribute('loading', 'lazy');
    image.setAttribute('referrerpolicy', 'no-referrer');
  }

  function renderMessage(html) {
    const template = document.createElement('template');
    // Template content is inert: nothing in it loads or runs before it is filtered.
    template.innerHTML = typeof html === 'string' ? html : '';
    filterMessageNodes(template.content);
    return h('div', { class: 'cm-message' }, [template.content]);
  }

  /* ---------- API ---------- */

  class RequestError extends Error {
    constructor(details) {
      super(details.message);
      this.status = details.status || 0;
      this.code = details.code;
      this.field = details.field || null;
    }
  }

  /* Parse a Retry-After header (seconds or an HTTP date) into whole seconds, or null. */
  function parseRetryAfter(value) {
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return Number(value.trim());
    const date = Date.parse(value);
    return isNaN(date) ? null : Math.max(1, Math.ceil((date - Date.now()) / 1000));
  }

  /* Send a JSON request to the API and return the parsed body. Rejects with a
     RequestError whose message can be shown to the reader as it is. */
  async function request(method, path, options) {
    const headers = { Accept: 'application/json' };
    const init = { method: method, headers: headers, credentials: 'omit', cache: 'no-store' };
    if (options && options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    if (options && options.editToken) headers['X-Edit-Token'] = options.editToken;

    let response;
    try {
      response = await fetch(API_BASE + path, init);
    } catch (error) {
      throw new RequestError({ code: 'network', message: t('errorNetwork') });
    }
    updateClockOffset(response);

    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (response.ok && data && typeof data === 'object') return data;

    const detail = data && data.error && typeof data.error === 'object' ? data.error : {};
    const status = response.status;
    const retryAfter = status === 429 ? parseRetryAfter(response.headers.get('Retry-After')) : null;
    // The server's message is shown as it is. The fallbacks cover proxies and
    // crashes that respond without the JSON error document.
    let message = readText(detail.message, 1000);
    if (!message && status === 429) {
      message = t('errorRateLimited') + (retryAfter ? ' ' + t.plural('retryAfter', retryAfter) : '');
    }
    if (!message) message = t('errorHttp', { status: status });
    throw new RequestError({
      status: status,
      code: readText(detail.code, 100) || 'http_' + status,
      field: readText(detail.field, 100),
      message: message
    });
  }

  function threadPath(suffix) {
    return '/threads/' + encodeURIComponent(state.thread.id) + suffix;
  }

  function postPath(postId, suffix) {
    return '/posts/' + encodeURIComponent(postId) + (suffix || '');
  }

  /* ---------- parent frame ---------- */

  function postToParent(message) {
    if (window.parent === window || !config || !config.parentOrigin) return;
    nativePostMessage.call(window.parent, message, config.parentOrigin);
  }

  let lastReportedHeight = -1;
  let heightReportScheduled = false;

  function reportHeight() {
    heightReportScheduled = false;
    const height = Math.ceil(root.getBoundingClientRect().bottom + window.scrollY);
    if (height === lastReportedHeight) return;
    lastReportedHeight = height;
    postToParent({ type: 'comments:resize', height: height });
  }

  /* Report the height soon, once for a burst of changes. A timer is used rather than
     requestAnimationFrame because Chrome pauses rendering in cross-origin frames
     that are off screen, and the frame could then never grow into view. */
  function scheduleHeightReport() {
    if (heightReportScheduled) return;
    heightReportScheduled = true;
    setTimeout(reportHeight, 30);
  }

  function handleParentMessage(event) {
    if (!config || event.source !== window.parent || event.origin !== config.parentOrigin) return;
    const data = event.data;
    if (data && data.type === 'comments:color-scheme' && (data.colorScheme === 'light' || data.colorScheme === 'dark')) {
      state.colorScheme = data.colorScheme;
      applyTheme();
    }
  }

  function applyTheme() {
    const theme = config && config.theme !== 'auto' ? config.theme : state.colorScheme;
    document.documentElement.setAttribute('data-theme', theme);
  }

  /* ---------- page skeleton ---------- */

  function buildSkeleton() {
    root.textContent = '';
    ui.heading = h('h2', { id: 'cm-count', class: 'cm-count', text: t('loading') });
    ui.sort = h('select', { id: 'cm-sort', class: 'cm-sort' }, SORTS.map((sort) =>
      h('option', { value: sort, text: t('sort' + sort[0].toUpperCase() + sort.slice(1)) })));
    ui.sort.value = state.sort;
    ui.sort.addEventListener('change', () => changeSort(ui.sort.value));

    ui.composer = h('section', { class: 'cm-composer', 'aria-labelledby': 'cm-composer-heading', hidden: true }, [
      h('h3', { id: 'cm-composer-heading', class: 'cm-sr', text: t('newCommentHeading') }),
      buildPostForm(null)
    ]);
    ui.status = h('p', { class: 'cm-status', role: 'status' });
    ui.notice = h('div', { class: 'cm-notice' });
    ui.list = h('ul', { class: 'cm-list', role: 'list', 'aria-labelledby': 'cm-count' });
    ui.more = h('button', { type: 'button', class: 'cm-button cm-more', hidden: true, text: t('loadMore') });
    ui.more.addEventListener('click', loadMore);

    root.append(
      h('div', { class: 'cm-header' }, [
        ui.heading,
        h('div', { class: 'cm-sort-box' }, [h('label', { for: 'cm-sort', text: t('sortLabel') }), ui.sort])
      ]),
      ui.composer,
      ui.status,
      ui.notice,
      ui.list,
      ui.more
    );
  }

  function showNotice(text, withRetry) {
    ui.notice.textContent = '';
    if (!text) return;
    ui.notice.append(h('p', { text: text }));
    if (withRetry) {
      const retry = h('button', { type: 'button', class: 'cm-button', text: t('retry') });
      retry.addEventListener('click', loadThread);
      ui.notice.append(retry);
    }
  }

  function updateHeading() {
    const count = state.thread && Number.isFinite(state.thread.posts) ? Math.max(0, state.thread.posts) : 0;
    ui.heading.textContent = t.plural('commentCount', count);
  }

  function isClosed() {
    return Boolean(state.thread && state.thread.closed);
  }

  /* ---------- forms ---------- */

  function buildField(labelText, control, extra) {
    const id = uniqueId('field');
    control.id = id;
    return h('div', { class: 'cm-field' }, [h('label', { for: id, text: labelText }), control, extra]);
  }

  function buildFormError() {
    return h('p', { class: 'cm-form-error', id: uniqueId('error'), role: 'alert', hidden: true });
  }

  function clearFormError(form) {
    const error = form.querySelector('.cm-form-error');
    error.hidden = true;
    error.textContent = '';
    for (const control of form.querySelectorAll('[aria-invalid]')) {
      control.removeAttribute('aria-invalid');
      const describedBy = (control.getAttribute('aria-describedby') || '').split(' ').filter((id) => id !== error.id);
      control.setAttribute('aria-describedby', describedBy.join(' '));
    }
  }

  /* Show an error in the form. When `fieldName` names one of its controls, that control
     is marked invalid, linked to the message and focused. */
  function showFormError(form, fieldName, message) {
    const error = form.querySelector('.cm-form-error');
    error.textContent = message;
    error.hidden = false;
    const control = fieldName ? form.elements.namedItem(fieldName) : null;
    if (control && control.setAttribute) {
      control.setAttribute('aria-invalid', 'true');
      const describedBy = (control.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
      control.setAttribute('aria-describedby', describedBy.concat(error.id).join(' '));
      control.focus();
    }
    scheduleHeightReport();
  }

  function showRequestError(form, error) {
    if (!(error instanceof RequestError)) {
      console.error('comments: unexpected error while sending a form', error);
      showFormError(form, null, t('errorUnexpected'));
      return;
    }
    showFormError(form, error.field, error.message);
  }

  function setFormBusy(form, busy, busyLabel) {
    const submit = form.querySelector('[type="submit"]');
    if (busy) {
      submit.dataset.label = submit.textContent;
      submit.textContent = busyLabel;
    } else if (submit.dataset.label) {
      submit.textContent = submit.dataset.label;
    }
    for (const control of form.elements) control.disabled = busy;
    form.setAttribute('aria-busy', String(busy));
  }

  function buildMessageField(labelText, value) {
    const hintId = uniqueId('hint');
    const textarea = h('textarea', { name: 'message', rows: '4', 'aria-describedby': hintId });
    textarea.value = value || '';
    return buildField(labelText, textarea, h('p', { class: 'cm-hint', id: hintId, text: t('markdownHint') }));
  }

  /* Build the form for a new top-level comment (parentEntry null) or a reply. */
  function buildPostForm(parentEntry) {
    const identity = storage.get('identity') || {};
    const nameInput = h('input', { name: 'author_name', type: 'text', autocomplete: 'name', maxlength: '200' });
    nameInput.value = typeof identity.name === 'string' ? identity.name : '';
    const emailInput = h('input', { name: 'author_email', type: 'email', autocomplete: 'email', maxlength: '320' });
    emailInput.value = typeof identity.email === 'string' ? identity.email : '';

    const parentName = parentEntry ? authorName(parentEntry.post) : null;
    const buttons = [h('button', { type: 'submit', class: 'cm-button cm-primary', text: t(parentEntry ? 'submitReply' : 'submitComment') })];
    if (parentEntry) {
      buttons.push(h('button', { type: 'button', class: 'cm-button', 'data-form-action': 'cancel', text: t('cancel') }));
    }
    const form = h('form', { class: parentEntry ? 'cm-form cm-reply-form' : 'cm-form', novalidate: true, id: uniqueId('form') }, [
      buildFormError(),
      buildMessageField(parentEntry ? t('replyLabel', { name: parentName }) : t('messageLabel')),
      h('div', { class: 'cm-identity' }, [buildField(t('nameLabel'), nameInput), buildField(t('emailLabel'), emailInput)]),
      h('div', { class: 'cm-form-buttons' }, buttons)
    ]);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      submitPost(form, parentEntry);
    });
    if (parentEntry) attachCancel(form, () => closeReplyForm(parentEntry, true));
    return form;
  }

  function attachCancel(form, cancel) {
    form.addEventListener('click', (event) => {
      if (event.target.closest('[data-form-action="cancel"]')) cancel();
    });
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        cancel();
      }
    });
  }

  async function submitPost(form, parentEntry) {
    clearFormError(form);
    const name = form.elements.author_name.value.trim();
    const email = form.elements.author_email.value.trim();
    const message = form.elements.message.value;
    if (!message.trim()) {
      showFormError(form, 'message', t('errorMessageRequired'));
      return;
    }
    if (!name) {
      showFormError(form, 'author_name', t('errorNameRequired'));
      return;
    }
    storage.set('identity', { name: name, email: email });

    const body = { author_name: name, message: message };
    if (email) body.author_email = email;
    if (parentEntry) body.parent = parentEntry.post.id;

    // The last post's "is posted" line would read as if this one had been posted too.
    ui.status.textContent = '';
    setFormBusy(form, true, t('submitting'));
    let data;
    try {
      data = await request('POST', threadPath('/posts'), { body: body });
    } catch (error) {
      setFormBusy(form, false);
      showRequestError(form, error);
      return;
    }
    setFormBusy(form, false);

    const post = data.post;
    const pending = post.state === 'pending';
    rememberEditToken(post.id, data.edit_token, data.edit_until);
    // A post held for moderation is not counted until a moderator approves it.
    if (state.thread && !pending) state.thread.posts = (Number(state.thread.posts) || 0) + 1;
    updateHeading();
    showNotice(null);

    let entry;
    if (parentEntry) {
      closeReplyForm(parentEntry, false);
      entry = appendReply(parentEntry, post);
    } else {
      form.elements.message.value = '';
      entry = prependTopLevelPost(post);
    }
    const until = parseTime(data.edit_until);
    let postedKey = pending ? 'postedPending' : 'posted';
    if (!storage.persistent) postedKey += 'ThisVisit';
    announce(t(postedKey, { time: isNaN(until) ? '?' : clockFormat.format(until) }));
    entry.li.querySelector('.cm-post').focus();
    postToParent({ type: 'comments:new-comment', id: String(post.id) });
  }

  /* ---------- rendering posts ---------- */

  function authorName(post) {
    const name = post.author && typeof post.author.name === 'string' ? post.author.name.trim() : '';
    return name || t('guest');
  }

  function countDescendants(posts) {
    let count = 0;
    for (const post of posts) count += 1 + countDescendants(post.replies || []);
    return count;
  }

  function renderVotes(post) {
    const ownVote = readOwnVotes()[post.id] || 0;
    const score = Number(post.score) || 0;
    const likes = Number(post.likes) || 0;
    const dislikes = Number(post.dislikes) || 0;
    return h('span', { class: 'cm-votes', role: 'group', 'aria-label': t('votes') }, [
      h('button', {
        type: 'button', class: 'cm-vote cm-up', 'data-action': 'vote', 'data-value': '1',
        'aria-pressed': String(ownVote === 1), 'aria-label': t('upvote'), title: t('upvote') + ' (' + likes + ')'
      }, [h('span', { class: 'cm-arrow', 'aria-hidden': 'true' })]),
      h('span', { class: 'cm-score' }, [
        h('span', { 'aria-hidden': 'true', text: String(score) }),
        h('span', { class: 'cm-sr', text: t('score', { n: score }) })
      ]),
      h('button', {
        type: 'button', class: 'cm-vote cm-down', 'data-action': 'vote', 'data-value': '-1',
        'aria-pressed': String(ownVote === -1), 'aria-label': t('downvote'), title: t('downvote') + ' (' + dislikes + ')'
      }, [h('span', { class: 'cm-arrow', 'aria-hidden': 'true' })])
    ]);
  }

  function renderActions(entry) {
    const post = entry.post;
    const actions = [renderVotes(post)];
    if (!isClosed()) {
      actions.push(h('button', {
        type: 'button', class: 'cm-link', 'data-action': 'reply', 'aria-expanded': 'false', text: t('reply')
      }));
    }
    entry.editable = Boolean(editTokenFor(post.id));
    if (entry.editable) {
      scheduleEditExpiry(entry);
      actions.push(
        h('button', { type: 'button', class: 'cm-link', 'data-action': 'edit', text: t('edit') }),
        h('button', { type: 'button', class: 'cm-link cm-danger', 'data-action': 'delete', text: t('delete') })
      );
    }
    return h('div', { class: 'cm-actions' }, actions);
  }

  /* Run tick() just after the entry's edit window closes, so its buttons go away then. */
  function scheduleEditExpiry(entry) {
    const token = readEditTokens()[entry.post.id];
    const delay = token ? parseTime(token.until) - serverNow() : NaN;
    clearTimeout(entry.expiryTimer);
    // setTimeout runs at once for delays beyond 2^31 - 1 ms, and the tick covers those.
    if (delay > 0 && delay < 2147483647) entry.expiryTimer = setTimeout(tick, delay + 250);
  }

  function renderArticle(entry) {
    const post = entry.post;
    const deleted = post.state === 'deleted';
    const name = authorName(post);
    if (deleted) entry.editable = false;
    const meta = [];
    if (!deleted) meta.push(h('span', { class: 'cm-author', text: name }));
    if (entry.replyingTo) meta.push(h('span', { class: 'cm-replying-to', text: t('replyingTo', { name: entry.replyingTo }) }));
    meta.push(renderTime(post.created_at));
    const editedAt = parseTime(post.edited_at);
    if (post.state === 'pending') meta.push(h('span', { class: 'cm-pending', text: t('pending') }));
    if (!deleted && !isNaN(editedAt)) {
      meta.push(h('span', {
        class: 'cm-edited', title: t('editedAt', { time: exactTimeFormat.format(editedAt) }), text: t('edited')
      }));
    }

    return h('article', {
      class: deleted ? 'cm-post cm-deleted' : 'cm-post',
      tabindex: '-1',
      'aria-label': deleted ? t('deleted') : t('commentBy', { name: name })
    }, [
      h('div', { class: 'cm-meta' }, meta),
      deleted ? h('p', { class: 'cm-message cm-deleted-text', text: t('deleted') }) : renderMessage(post.message),
      deleted ? null : renderActions(entry)
    ]);
  }

  /* Render a post and its replies as a list item. Replies deeper than MAX_INDENT_DEPTH
     stay behind a "Continue this thread" button unless `expanded` is set. */
  function renderItem(post, depth, replyingTo, expanded) {
    if (!Array.isArray(post.replies)) post.replies = [];
    const li = h('li', { class: 'cm-item', 'data-id': String(post.id), 'aria-level': String(depth) });
    const entry = { post: post, li: li, depth: depth, replyingTo: replyingTo, expanded: expanded, editable: false };
    entries.set(String(post.id), entry);
    li.append(renderArticle(entry), h('div', { class: 'cm-reply-slot' }));
    if (post.replies.length > 0) li.append(renderReplies(entry));
    return li;
  }

  function renderReplies(entry) {
    const replies = entry.post.replies;
    if (entry.depth >= MAX_INDENT_DEPTH && !entry.expanded) {
      return h('div', { class: 'cm-continue-box' }, [h('button', {
        type: 'button', class: 'cm-link cm-continue', 'data-action': 'continue',
        text: t.plural('continueThread', countDescendants(replies))
      })]);
    }
    const flat = entry.depth >= MAX_INDENT_DEPTH;
    // Past the indentation limit, each reply names its parent because the
    // layout no longer shows which comment it replies to.
    const replyingTo = flat ? authorName(entry.post) : null;
    return h('ul', { class: flat ? 'cm-replies cm-flat' : 'cm-replies', role: 'list' },
      replies.map((reply) => renderItem(reply, entry.depth + 1, entry.post.state === 'deleted' ? null : replyingTo, flat)));
  }

  function rerenderArticle(entry) {
    entry.li.firstElementChild.replaceWith(renderArticle(entry));
  }

  function appendTopLevelPosts(posts) {
    for (const post of posts) {
      if (!post || entries.has(String(post.id))) continue;
      ui.list.append(renderItem(post, 1, null, false));
    }
  }

  function prependTopLevelPost(post) {
    const li = renderItem(post, 1, null, false);
    ui.list.prepend(li);
    return entries.get(String(post.id));
  }

  function expandThread(entry) {
    entry.expanded = true;
    const box = entry.li.querySelector(':scope > .cm-continue-box');
    const list = renderReplies(entry);
    if (box) box.replaceWith(list);
    return list;
  }

  function appendReply(parentEntry, post) {
    parentEntry.post.replies.push(post);
    let list = parentEntry.li.querySelector(':scope > .cm-replies');
    if (!list) {
      // expandThread renders all replies, the new one included.
      if (parentEntry.li.querySelector(':scope > .cm-continue-box')) {
        expandThread(parentEntry);
        return entries.get(String(post.id));
      }
      list = h('ul', { class: parentEntry.depth >= MAX_INDENT_DEPTH ? 'cm-replies cm-flat' : 'cm-replies', role: 'list' });
      parentEntry.li.append(list);
    }
    const flat = parentEntry.depth >= MAX_INDENT_DEPTH;
    list.append(renderItem(post, parentEntry.depth + 1, flat ? authorName(parentEntry.post) : null, flat));
    return entries.get(String(post.id));
  }

  /* ---------- loading ---------- */

  async function loadThread() {
    showNotice(t('loading'));
    root.setAttribute('aria-busy', 'true');
    try {
      const threadData = await request('POST', '/threads', {
        body: { forum: config.forum, identifier: config.identifier, url: config.url, title: config.title }
      });
      state.thread = threadData.thread;
      // Pruned only now, once the Date header has set the server clock offset.
      pruneEditTokens();
      await loadPage(true);
    } catch (error) {
      root.setAttribute('aria-busy', 'false');
      ui.heading.textContent = t('loadFailed');
      showNotice(error instanceof RequestError ? error.message : t('loadFailed'), true);
      if (!(error instanceof RequestError)) console.error('comments: loading the thread failed', error);
    }
  }

  /* Load one page of top-level posts. With `replace` the list is cleared and the first
     page loads. Without it, the page after the stored cursor is appended. */
  async function loadPage(replace) {
    const generation = ++state.generation;
    const params = new URLSearchParams({ sort: state.sort, limit: String(PAGE_SIZE) });
    if (!replace && state.cursor) params.set('cursor', state.cursor);
    root.setAttribute('aria-busy', 'true');
    const data = await request('GET', threadPath('/posts?' + params.toString()));
    if (generation !== state.generation) return;

    if (replace) {
      ui.list.textContent = '';
      entries.clear();
    }
    if (data.thread) state.thread = data.thread;
    updateHeading();
    ui.composer.hidden = isClosed();

    appendTopLevelPosts(Array.isArray(data.posts) ? data.posts : []);
    const cursor = data.cursor || {};
    state.cursor = typeof cursor.next === 'string' ? cursor.next : null;
    state.hasMore = Boolean(cursor.has_more && state.cursor);
    ui.more.hidden = !state.hasMore;

    if (isClosed()) showNotice(t('closed'));
    else if (entries.size === 0) showNotice(t('empty'));
    else showNotice(null);
    root.setAttribute('aria-busy', 'false');
  }

  async function loadMore() {
    ui.more.disabled = true;
    ui.more.textContent = t('loadingMore');
    const firstNewIndex = ui.list.children.length;
    try {
      await loadPage(false);
      const firstNew = ui.list.children[firstNewIndex];
      if (firstNew) firstNew.querySelector('.cm-post').focus();
    } catch (error) {
      announce(error.message);
    } finally {
      ui.more.disabled = false;
      ui.more.textContent = t('loadMore');
      root.setAttribute('aria-busy', 'false');
    }
  }

  async function changeSort(sort) {
    if (!SORTS.includes(sort) || !state.thread) return;
    state.sort = sort;
    state.cursor = null;
    try {
      await loadPage(true);
    } catch (error) {
      root.setAttribute('aria-busy', 'false');
      announce(error.message);
    }
  }

  /* ---------- actions on posts ---------- */

  function openReplyForm(entry, button) {
    const slot = entry.li.querySelector(':scope > .cm-reply-slot');
    if (slot.firstChild) {
      closeReplyForm(entry, true);
      return;
    }
    const form = buildPostForm(entry);
    slot.append(form);
    button.setAttribute('aria-expanded', 'true');
    button.setAttribute('aria-controls', form.id);
    form.elements.message.focus();
  }

  function closeReplyForm(entry, restoreFocus) {
    const slot = entry.li.querySelector(':scope > .cm-reply-slot');
    slot.textContent = '';
    const button = entry.li.querySelector(':scope > .cm-post [data-action="reply"]');
    if (!button) return;
    button.setAttribute('aria-expanded', 'false');
    button.removeAttribute('aria-controls');
    if (restoreFocus) button.focus();
  }

  async function vote(entry, button) {
    const pressed = button.getAttribute('aria-pressed') === 'true';
    const value = pressed ? 0 : Number(button.dataset.value);
    const group = button.closest('.cm-votes');
    for (const control of group.querySelectorAll('button')) control.disabled = true;
    try {
      const data = await request('POST', postPath(entry.post.id, '/vote'), { body: { voter: getVoterId(), value: value } });
      Object.assign(entry.post, {
        likes: data.post.likes, dislikes: data.post.dislikes, score: data.post.score
      });
      rememberOwnVote(String(entry.post.id), typeof data.vote === 'number' ? data.vote : value);
      const votes = renderVotes(entry.post);
      group.replaceWith(votes);
      votes.querySelector('[data-value="' + button.dataset.value + '"]').focus();
    } catch (error) {
      for (const control of group.querySelectorAll('button')) control.disabled = false;
      announce(error.message);
    }
  }

  function openEditForm(entry) {
    const article = entry.li.firstElementChild;
    const form = h('form', { class: 'cm-form cm-edit-form', novalidate: true }, [
      buildFormError(),
      buildMessageField(t('editLabel'), typeof entry.post.raw === 'string' ? entry.post.raw : ''),
      h('div', { class: 'cm-form-buttons' }, [
        h('button', { type: 'submit', class: 'cm-button cm-primary', text: t('save') }),
        h('button', { type: 'button', class: 'cm-button', 'data-form-action': 'cancel', text: t('cancel') })
      ])
    ]);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      saveEdit(entry, form);
    });
    attachCancel(form, () => {
      rerenderArticle(entry);
      entry.li.querySelector(':scope > .cm-post [data-action="edit"]')?.focus();
    });
    article.querySelector('.cm-message').replaceWith(form);
    article.querySelector('.cm-actions').hidden = true;
    form.elements.message.focus();
  }

  async function saveEdit(entry, form) {
    clearFormError(form);
    const message = form.elements.message.value;
    if (!message.trim()) {
      showFormError(form, 'message', t('errorMessageRequired'));
      return;
    }
    const token = editTokenFor(entry.post.id);
    if (!token) {
      showFormError(form, null, t('errorEditExpired'));
      return;
    }
    setFormBusy(form, true, t('saving'));
    try {
      const data = await request('PATCH', postPath(entry.post.id), { body: { message: message }, editToken: token });
      Object.assign(entry.post, data.post, { replies: entry.post.replies });
    } catch (error) {
      setFormBusy(form, false);
      if (error.status === 403) forgetEditToken(entry.post.id);
      showRequestError(form, error);
      return;
    }
    rerenderArticle(entry);
    entry.li.firstElementChild.focus();
    announce(t('saved'));
  }

  function askDeleteConfirmation(entry) {
    const actions = entry.li.querySelector(':scope > .cm-post > .cm-actions');
    const cancel = h('button', { type: 'button', class: 'cm-button', 'data-action': 'delete-cancel', text: t('cancel') });
    const confirmation = h('div', { class: 'cm-confirm', role: 'group', 'aria-label': t('deleteConfirm') }, [
      h('p', { class: 'cm-form-error', role: 'alert', text: t('deleteConfirm') }),
      h('button', { type: 'button', class: 'cm-button cm-danger-button', 'data-action': 'delete-confirm', text: t('delete') }),
      cancel
    ]);
    actions.replaceWith(confirmation);
    cancel.focus();
  }

  async function deletePost(entry, button) {
    const token = editTokenFor(entry.post.id);
    const confirmation = button.closest('.cm-confirm');
    const notice = confirmation.querySelector('p');
    if (!token) {
      notice.textContent = t('errorEditExpired');
      return;
    }
    for (const control of confirmation.querySelectorAll('button')) control.disabled = true;
    button.textContent = t('deleting');
    try {
      const data = await request('DELETE', postPath(entry.post.id), { editToken: token });
      Object.assign(entry.post, data.post, { replies: entry.post.replies });
    } catch (error) {
      if (error.status === 403) forgetEditToken(entry.post.id);
      notice.textContent = error.message;
      for (const control of confirmation.querySelectorAll('button')) control.disabled = false;
      button.textContent = t('delete');
      return;
    }
    forgetEditToken(entry.post.id);
    entry.post.state = 'deleted';
    if (state.thread) state.thread.posts = Math.max(0, (Number(state.thread.posts) || 0) - 1);
    updateHeading();
    announce(t('deletedStatus'));

    if (entry.post.replies.length === 0) {
      // A deleted post without replies has nothing left to show.
      const next = entry.li.nextElementSibling || entry.li.parentElement.closest('.cm-item');
      entry.li.remove();
      entries.delete(String(entry.post.id));
      if (entries.size === 0) showNotice(t('empty'));
      (next ? next.querySelector('.cm-post') : ui.heading).focus?.();
    } else {
      rerenderArticle(entry);
      entry.li.firstElementChild.focus();
    }
  }

  function continueThread(entry) {
    const list = expandThread(entry);
    const first = list.querySelector('.cm-post');
    if (first) first.focus();
  }

  function handleClick(event) {
    const button = event.target.closest('[data-action]');
    if (!button || !root.contains(button)) return;
    const item = button.closest('.cm-item');
    const entry = item ? entries.get(item.getAttribute('data-id')) : null;
    if (!entry) return;

    switch (button.getAttribute('data-action')) {
      case 'reply':
        openReplyForm(entry, button);
        break;
      case 'vote':
        vote(entry, button);
        break;
      case 'edit':
        if (editTokenFor(entry.post.id)) openEditForm(entry);
        else rerenderArticle(entry);
        break;
      case 'delete':
        askDeleteConfirmation(entry);
        break;
      case 'delete-confirm':
        deletePost(entry, button);
        break;
      case 'delete-cancel':
        rerenderArticle(entry);
        entry.li.querySelector(':scope > .cm-post [data-action="delete"]')?.focus();
        break;
      case 'continue':
        continueThread(entry);
        break;
    }
  }

  /* Refresh relative times and drop Edit and Delete buttons whose window has closed. */
  function tick() {
    for (const time of root.querySelectorAll('time[data-time]')) {
      time.textContent = formatRelativeTime(Number(time.getAttribute('data-time')));
    }
    for (const entry of entries.values()) {
      if (!entry.editable || editTokenFor(entry.post.id)) continue;
      const article = entry.li.firstElementChild;
      // An open edit form stays, and saving it then reports the closed window.
      if (!article.querySelector('form')) rerenderArticle(entry);
    }
  }

  /* ---------- start ---------- */

  function start() {
    document.title = t('frameTitle');
    document.documentElement.lang = t.language;
    applyTheme();
    window.addEventListener('message', handleParentMessage);
    // ResizeObserver catches reflows such as wrapping after a width change, and
    // MutationObserver catches DOM changes while rendering is paused.
    new ResizeObserver(scheduleHeightReport).observe(root);
    new MutationObserver(scheduleHeightReport).observe(root, {
      childList: true, subtree: true, attributes: true, characterData: true
    });
    window.addEventListener('load', scheduleHeightReport);
    postToParent({ type: 'comments:ready', title: t('frameTitle') });

    if (!config) {
      root.setAttribute('aria-busy', 'false');
      root.append(h('p', { class: 'cm-notice', role: 'alert', text: t('invalidConfig') }));
      return;
    }
    buildSkeleton();
    root.addEventListener('click', handleClick);
    setInterval(tick, CLOCK_TICK_MS);
    loadThread();
  }

  start();
})();
