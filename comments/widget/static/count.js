/*
 * Comment counts for a host page:
 *
 *   <a href="/posts/one.html#disqus_thread" data-disqus-identifier="post-1">Comments</a>
 *   <span data-comments-identifier="post-2"></span>
 *   <script src="https://NODE/count.js" data-forum="demo" async></script>
 *
 * It finds links ending in #disqus_thread or #comments_thread, and elements with
 * data-disqus-identifier, data-comments-identifier, data-disqus-url or
 * data-comments-url. Each element is counted by its identifier, else by its URL (for
 * links, the href without the fragment). All counts come from one request to
 * GET /api/v1/counts, and each element's text becomes "No comments", "1 comment"
 * or "N comments" in the page language.
 *
 * The forum comes from data-forum on this script tag, or from the comments_shortname
 * or disqus_shortname global. The node must allow this page's origin by CORS.
 * The script avoids Array and NodeList methods because host pages may replace them.
 */
(function () {
  'use strict';

  var script = document.currentScript;
  if (!script || !script.src) {
    console.error('comments: count.js must be loaded by a <script src> tag, so that it can find its server.');
    return;
  }
  var nodeOrigin = new URL(script.src, location.href).origin;
  var SELECTOR = 'a[href$="#disqus_thread"], a[href$="#comments_thread"], ' +
    '[data-disqus-identifier], [data-comments-identifier], [data-disqus-url], [data-comments-url]';

  function readGlobal(name) {
    try {
      var value = window[name];
      return typeof value === 'string' && value !== '' ? value : null;
    } catch (error) {
      return null;
    }
  }

  function readForum() {
    return script.getAttribute('data-forum') || readGlobal('comments_shortname') || readGlobal('disqus_shortname');
  }

  function withoutHash(url) {
    var hashAt = url.indexOf('#');
    return hashAt === -1 ? url : url.slice(0, hashAt);
  }

  /* Return the key that counts `element`: { kind: 'identifier' | 'url', value }, or null. */
  function targetKey(element) {
    var identifier = element.getAttribute('data-comments-identifier') || element.getAttribute('data-disqus-identifier');
    if (identifier) return { kind: 'identifier', value: identifier };
    var url = element.getAttribute('data-comments-url') || element.getAttribute('data-disqus-url');
    if (url) return { kind: 'url', value: new URL(url, location.href).href };
    if (element.tagName === 'A' && element.href) return { kind: 'url', value: withoutHash(element.href) };
    return null;
  }

  function collectTargets() {
    var elements = document.querySelectorAll(SELECTOR);
    var targets = [];
    for (var i = 0; i < elements.length; i++) {
      var key = targetKey(elements[i]);
      if (key) targets[targets.length] = { element: elements[i], kind: key.kind, value: key.value };
    }
    return targets;
  }

  function buildCountsUrl(forum, targets) {
    var query = new URLSearchParams();
    query.append('forum', forum);
    var seen = {};
    for (var i = 0; i < targets.length; i++) {
      var seenKey = targets[i].kind + ' ' + targets[i].value;
      if (seen[seenKey] === true) continue;
      seen[seenKey] = true;
      query.append(targets[i].kind, targets[i].value);
    }
    // NOTE: the request is not split. The node rejects more than 200 identifiers or
    // 200 URLs in one request, and a long query can exceed a proxy's URL limit.
    return nodeOrigin + '/api/v1/counts?' + query.toString();
  }

  /* Resolve with CommentsLocale, loading locale.js from the node if the page lacks it. */
  function loadLocale() {
    return new Promise(function (resolve) {
      if (window.CommentsLocale) {
        resolve(window.CommentsLocale);
        return;
      }
      var localeScript = document.createElement('script');
      localeScript.src = nodeOrigin + '/widget/locale.js';
      localeScript.async = true;
      localeScript.onload = localeScript.onerror = function () {
        resolve(window.CommentsLocale || null);
      };
      (document.head || document.documentElement).appendChild(localeScript);
    });
  }

  function readCount(map, key) {
    if (!map || typeof map !== 'object' || !Object.prototype.hasOwnProperty.call(map, key)) return 0;
    var count = Number(map[key]);
    return isFinite(count) && count > 0 ? Math.floor(count) : 0;
  }

  /* Format a count in English, for when locale.js could not be loaded. */
  function englishCount(count) {
    if (count === 0) return 'No comments';
    if (count === 1) return '1 comment';
    return count + ' comments';
  }

  function fillCounts(targets, counts, locale) {
    var language = script.getAttribute('data-language') || document.documentElement.lang || navigator.language;
    var translate = locale ? locale.createTranslator(language) : null;
    for (var i = 0; i < targets.length; i++) {
      var target = targets[i];
      var count = readCount(target.kind === 'identifier' ? counts.identifiers : counts.urls, target.value);
      target.element.textContent = translate ? translate.plural('commentCount', count) : englishCount(count);
      target.element.setAttribute('data-comments-count', String(count));
    }
  }

  /* Fill every count element on the page. Returns a promise that settles when done. */
  function refresh() {
    var forum = readForum();
    if (!forum) {
      console.error('comments: count.js needs a forum. Add data-forum="SHORTNAME" to its script tag.');
      return Promise.resolve();
    }
    var targets = collectTargets();
    if (targets.length === 0) return Promise.resolve();

    var countsRequest = fetch(buildCountsUrl(forum, targets), { credentials: 'omit', headers: { Accept: 'application/json' } })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      });
    return Promise.all([countsRequest, loadLocale()]).then(function (results) {
      fillCounts(targets, results[0] || {}, results[1]);
    }, function (error) {
      // Count links keep their original text when the counts are unavailable.
      console.error('comments: loading comment counts from ' + nodeOrigin + ' failed', error);
    });
  }

  window.CommentsCount = { refresh: refresh };

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', refresh);
  } else {
    refresh();
  }
})();
