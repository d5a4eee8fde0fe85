/*
 * Comments embed loader. A host page includes it after a container element:
 *
 *   <div id="comments_thread"></div>
 *   <script>var comments_config = function () { this.forum = 'demo'; this.page.identifier = 'post-1'; };</script>
 *   <script src="https://NODE/embed.js" async></script>
 *
 * Disqus embed code also works with only the script URL changed: the container may be
 * #disqus_thread, the config may be `disqus_config`, and the forum may come from
 * `this.forum`, a data-forum attribute on this script tag, or `disqus_shortname`.
 *
 * The loader puts the widget in an iframe served by the node and only resizes that
 * iframe from its messages. It reads host globals but never evaluates message data.
 * It avoids Array and NodeList methods because host pages may replace them.
 */
(function () {
  'use strict';

  var script = document.currentScript;
  if (!script || !script.src) {
    console.error('comments: embed.js must be loaded by a <script src> tag, so that it can find its server.');
    return;
  }
  var nodeOrigin = new URL(script.src, location.href).origin;
  var CONTAINER_IDS = ['comments_thread', 'disqus_thread'];
  var THEMES = { auto: true, light: true, dark: true };
  var MAX_FRAME_HEIGHT = 100000;
  // Time after the iframe's load event within which the widget must report that it
  // started. A frame blocked by frame-ancestors, or one that failed to load, never does.
  var READY_GRACE_MS = 4000;
  var ENGLISH_EMBED_FAILED = 'Comments for forum “{forum}” could not be shown on {origin}. ' +
    'Either this site is not allowed by the forum, or the comments server is unreachable.';

  var current = null;

  function readString(value) {
    if (typeof value === 'number' && isFinite(value)) return String(value);
    return typeof value === 'string' && value !== '' ? value : null;
  }

  function readGlobal(name) {
    try {
      return readString(window[name]);
    } catch (error) {
      return null;
    }
  }

  /* Call the host's config function the way Disqus does: `this` has `page` and
     `callbacks` objects that the function fills in. */
  function runConfigFunction(configFunction) {
    var context = {
      page: {},
      callbacks: { onReady: [], onNewComment: [] }
    };
    if (typeof configFunction === 'function') {
      try {
        configFunction.call(context);
      } catch (error) {
        console.error('comments: the page config function raised an error, so defaults are used', error);
      }
    }
    return context;
  }

  function pageUrlWithoutHash() {
    var hashAt = location.href.indexOf('#');
    return hashAt === -1 ? location.href : location.href.slice(0, hashAt);
  }

  function currentColorScheme() {
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }

  /* Build the widget config from comments_config, disqus_config, the older
     disqus_identifier/url/title globals, script attributes and page defaults. */
  function readEmbedConfig(configFunction) {
    if (!configFunction) {
      configFunction = typeof window.comments_config === 'function' ? window.comments_config : window.disqus_config;
    }
    var context = runConfigFunction(configFunction);
    var page = context.page && typeof context.page === 'object' ? context.page : {};
    var theme = readString(context.theme) || script.getAttribute('data-theme') || 'auto';
    return {
      config: {
        forum: readString(context.forum) || readString(script.getAttribute('data-forum')) ||
          readGlobal('comments_shortname') || readGlobal('disqus_shortname'),
        identifier: readString(page.identifier) || readGlobal('disqus_identifier'),
        url: readString(page.url) || readGlobal('disqus_url') || pageUrlWithoutHash(),
        title: readString(page.title) || readGlobal('disqus_title') || document.title,
        theme: THEMES[theme] === true ? theme : 'auto',
        colorScheme: currentColorScheme(),
        language: readString(context.language) || readString(script.getAttribute('data-language')),
        parentOrigin: location.origin
      },
      callbacks: context.callbacks && typeof context.callbacks === 'object' ? context.callbacks : {}
    };
  }

  function findContainer() {
    for (var i = 0; i < CONTAINER_IDS.length; i++) {
      var element = document.getElementById(CONTAINER_IDS[i]);
      if (element) return element;
    }
    return null;
  }

  /* Set inline styles with !important, because they must win over host rules such as
     `iframe { height: 0 !important }`. */
  function setImportantStyles(element, styles) {
    for (var name in styles) {
      if (Object.prototype.hasOwnProperty.call(styles, name)) {
        element.style.setProperty(name, styles[name], 'important');
      }
    }
  }

  function runCallbacks(list, argument) {
    if (!list || typeof list.length !== 'number') return;
    for (var i = 0; i < list.length; i++) {
      if (typeof list[i] !== 'function') continue;
      try {
        list[i].call(null, argument);
      } catch (error) {
        console.error('comments: a page callback raised an error', error);
      }
    }
  }

  function showEmbedFailure(embed) {
    var values = { forum: embed.config.forum || '?', origin: location.origin };
    var message = ENGLISH_EMBED_FAILED.replace('{forum}', values.forum).replace('{origin}', values.origin);
    var locale = window.CommentsLocale;
    if (locale && typeof locale.createTranslator === 'function') {
      message = locale.createTranslator(embed.config.language || navigator.language)('embedFailed', values);
    }
    if (embed.frame.parentNode) embed.frame.parentNode.removeChild(embed.frame);
    var notice = document.createElement('p');
    notice.setAttribute('role', 'alert');
    notice.setAttribute('data-comments-error', '');
    notice.textContent = message;
    setImportantStyles(notice, { display: 'block', padding: '1em', border: '1px solid #c33', 'border-radius': '4px' });
    embed.container.appendChild(notice);
    console.error('comments: ' + message + ' Check that the forum lists ' + location.origin +
      ' as an allowed origin, and that ' + nodeOrigin + ' is reachable.');
  }

  /* Load locale.js from the node and then show the failure notice in the page language.
     The notice falls back to English when the node itself is unreachable. */
  function reportEmbedFailure(embed) {
    if (window.CommentsLocale) {
      showEmbedFailure(embed);
      return;
    }
    var localeScript = document.createElement('script');
    localeScript.src = nodeOrigin + '/widget/locale.js';
    localeScript.onload = localeScript.onerror = function () {
      if (current === embed) showEmbedFailure(embed);
    };
    document.head.appendChild(localeScript);
  }

  function handleFrameMessage(embed, event) {
    if (event.origin !== nodeOrigin || event.source !== embed.frame.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== 'object') return;

    if (data.type === 'comments:resize') {
      var height = Number(data.height);
      if (isFinite(height) && height >= 0) {
        embed.frame.style.setProperty('height', Math.min(Math.ceil(height), MAX_FRAME_HEIGHT) + 'px', 'important');
      }
    } else if (data.type === 'comments:ready') {
      embed.ready = true;
      if (typeof data.title === 'string' && data.title !== '') embed.frame.title = data.title.slice(0, 200);
      runCallbacks(embed.callbacks.onReady);
    } else if (data.type === 'comments:new-comment' && typeof data.id === 'string') {
      runCallbacks(embed.callbacks.onNewComment, { id: data.id });
    }
  }

  function sendColorScheme(embed) {
    if (current !== embed || !embed.frame.contentWindow) return;
    embed.frame.contentWindow.postMessage({ type: 'comments:color-scheme', colorScheme: currentColorScheme() }, nodeOrigin);
  }

  /* Create the widget iframe in the container, replacing an earlier one. */
  function mount(configFunction) {
    var container = findContainer();
    if (!container) {
      console.error('comments: no element with id "comments_thread" or "disqus_thread" was found on this page.');
      return;
    }
    var embedConfig = readEmbedConfig(configFunction);
    if (!embedConfig.config.forum) {
      console.error('comments: no forum is configured. Set this.forum in comments_config, ' +
        'or add data-forum="SHORTNAME" to the embed.js script tag.');
    }

    while (container.firstChild) container.removeChild(container.firstChild);
    var frame = document.createElement('iframe');
    var embed = {
      frame: frame,
      container: container,
      config: embedConfig.config,
      callbacks: embedConfig.callbacks,
      ready: false
    };
    current = embed;

    frame.title = 'Comments';
    frame.setAttribute('scrolling', 'no');
    frame.setAttribute('data-comments-frame', '');
    // Without allow-top-navigation the widget cannot navigate the host page. A node
    // on the host page's own origin could lift the sandbox, as same-origin frames can.
    frame.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox');
    setImportantStyles(frame, {
      display: 'block',
      visibility: 'visible',
      // Chrome stops rendering cross-origin frames that sit off screen, and the
      // widget then cannot measure itself, so host rules must not move the frame.
      position: 'static',
      float: 'none',
      transform: 'none',
      'clip-path': 'none',
      width: '100%',
      'min-width': '100%',
      'max-width': '100%',
      height: '150px',
      'min-height': '0',
      'max-height': 'none',
      border: '0',
      margin: '0',
      padding: '0',
      overflow: 'hidden',
      opacity: '1',
      'color-scheme': 'normal'
    });
    // The node reads ?forum= to send the forum's allowed origins as frame-ancestors.
    frame.src = nodeOrigin + '/widget/thread.html?forum=' + encodeURIComponent(embedConfig.config.forum || '') +
      '#' + encodeURIComponent(JSON.stringify(embedConfig.config));

    frame.addEventListener('load', function () {
      setTimeout(function () {
        if (current === embed && !embed.ready) reportEmbedFailure(embed);
      }, READY_GRACE_MS);
    });
    container.appendChild(frame);
  }

  window.addEventListener('message', function (event) {
    if (current) handleFrameMessage(current, event);
  });

  if (window.matchMedia) {
    var schemeQuery = window.matchMedia('(prefers-color-scheme: dark)');
    if (typeof schemeQuery.addEventListener === 'function') {
      schemeQuery.addEventListener('change', function () {
        if (current) sendColorScheme(current);
      });
    }
  }

  /* Reload the widget, for single-page sites that change the article without a page
     load. options.config replaces the page's config function for this load. */
  function reset(options) {
    mount(options && typeof options.config === 'function' ? options.config : null);
  }

  window.CommentsEmbed = { reset: reset };
  if (!window.DISQUS) window.DISQUS = { reset: reset };

  if (findContainer() || document.readyState !== 'loading') {
    mount(null);
  } else {
    document.addEventListener('DOMContentLoaded', function () {
      mount(null);
    });
  }
})();
