/*
 * User-visible strings of the comments widget, the embed loader and count.js, keyed
 * by language. English comes first and fills every key that another language lacks.
 *
 * Loaded by thread.html inside the iframe. On the host page count.js loads it, and
 * embed.js does when it shows a failure notice. It defines one global, `CommentsLocale`.
 * Placeholders are written {name}. Plural entries are objects keyed by the
 * Intl.PluralRules categories (one, few, many, other), plus an optional `zero`
 * that is used for 0 in every language.
 */
(function () {
  'use strict';

  var STRINGS = {
    en: {
      frameTitle: 'Comments',
      commentCount: { zero: 'No comments', one: '{n} comment', other: '{n} comments' },
      sortLabel: 'Sort by',
      sortBest: 'Best',
      sortNewest: 'Newest',
      sortOldest: 'Oldest',
      loading: 'Loading comments…',
      loadMore: 'Load more comments',
      loadingMore: 'Loading…',
      loadFailed: 'Comments could not be loaded.',
      retry: 'Try again',
      empty: 'No one has commented yet. Be the first.',
      closed: 'Comments are closed for this page.',
      invalidConfig: 'The comments widget was embedded without a valid configuration. The site owner should check the comments_config or disqus_config on this page.',
      newCommentHeading: 'Join the discussion',
      nameLabel: 'Name',
      emailLabel: 'Email (optional, never shown)',
      messageLabel: 'Comment',
      replyLabel: 'Reply to {name}',
      editLabel: 'Edit your comment',
      markdownHint: 'Markdown works: **bold**, *italic*, `code`, [link](https://example.com), > quote.',
      submitComment: 'Post comment',
      submitReply: 'Post reply',
      submitting: 'Posting…',
      save: 'Save',
      saving: 'Saving…',
      cancel: 'Cancel',
      reply: 'Reply',
      edit: 'Edit',
      delete: 'Delete',
      deleteConfirm: 'Delete this comment? This cannot be undone.',
      deleting: 'Deleting…',
      upvote: 'Upvote',
      downvote: 'Downvote',
      votes: 'Votes',
      score: 'Score: {n}',
      commentBy: 'Comment by {name}',
      guest: 'Guest',
      deleted: 'This comment was deleted',
      edited: 'edited',
      editedAt: 'Edited {time}',
      justNow: 'just now',
      replyingTo: 'In reply to {name}',
      continueThread: { one: 'Continue this thread ({n} more reply)', other: 'Continue this thread ({n} more replies)' },
      posted: 'Your comment is posted. You can edit or delete it until {time}.',
      postedPending: 'Your comment is awaiting moderation. You can edit or delete it until {time}.',
      pending: 'Awaiting moderation',
      postedThisVisit: 'Your comment is posted. This browser blocks storage for embedded comments, so you can edit or delete it until {time} only while this page stays open.',
      postedPendingThisVisit: 'Your comment is awaiting moderation. This browser blocks storage for embedded comments, so you can edit or delete it until {time} only while this page stays open.',
      saved: 'Your changes are saved.',
      deletedStatus: 'Your comment was deleted.',
      errorNameRequired: 'Enter your name.',
      errorMessageRequired: 'Write a comment before posting.',
      errorNetwork: 'Could not reach the comments server. Check your connection and try again.',
      errorRateLimited: 'Too many requests. Wait a moment and try again.',
      retryAfter: { one: 'Try again in {n} second.', other: 'Try again in {n} seconds.' },
      errorEditExpired: 'The time for editing this comment has run out.',
      errorHttp: 'The comments server could not handle the request (HTTP {status}).',
      errorUnexpected: 'Something went wrong in the comments widget. Reload the page and try again.',
      embedFailed: 'Comments for forum “{forum}” could not be shown on {origin}. Either this site is not allowed by the forum, or the comments server is unreachable.'
    },
    de: {
      frameTitle: 'Kommentare',
      commentCount: { zero: 'Keine Kommentare', one: '{n} Kommentar', other: '{n} Kommentare' },
      sortLabel: 'Sortieren nach',
      sortBest: 'Beste',
      sortNewest: 'Neueste',
      sortOldest: 'Älteste',
      loading: 'Kommentare werden geladen…',
      loadMore: 'Weitere Kommentare laden',
      loadingMore: 'Wird geladen…',
      loadFailed: 'Die Kommentare konnten nicht geladen werden.',
      retry: 'Erneut versuchen',
      empty: 'Noch hat niemand kommentiert. Schreiben Sie den ersten Kommentar.',
      closed: 'Die Kommentare zu dieser Seite sind geschlossen.',
      invalidConfig: 'Das Kommentar-Widget wurde ohne gültige Konfiguration eingebunden. Der Betreiber der Seite sollte comments_config oder disqus_config prüfen.',
      newCommentHeading: 'Diskutieren Sie mit',
      nameLabel: 'Name',
      emailLabel: 'E-Mail (freiwillig, wird nie angezeigt)',
      messageLabel: 'Kommentar',
      replyLabel: 'Antwort an {name}',
      editLabel: 'Kommentar bearbeiten',
      markdownHint: 'Markdown ist möglich: **fett**, *kursiv*, `Code`, [Link](https://example.com), > Zitat.',
      submitComment: 'Kommentar senden',
      submitReply: 'Antwort senden',
      submitting: 'Wird gesendet…',
      save: 'Speichern',
      saving: 'Wird gespeichert…',
      cancel: 'Abbrechen',
      reply: 'Antworten',
      edit: 'Bearbeiten',
      delete: 'Löschen',
      deleteConfirm: 'Diesen Kommentar löschen? Das lässt sich nicht rückgängig machen.',
      deleting: 'Wird gelöscht…',
      upvote: 'Positiv bewerten',
      downvote: 'Negativ bewerten',
      votes: 'Bewertungen',
      score: 'Wertung: {n}',
      commentBy: 'Kommentar von {name}',
      guest: 'Gast',
      deleted: 'Dieser Kommentar wurde gelöscht',
      edited: 'bearbeitet',
      editedAt: 'Bearbeitet {time}',
      justNow: 'gerade eben',
      replyingTo: 'Antwort an {name}',
      continueThread: { one: 'Diskussion fortsetzen ({n} weitere Antwort)', other: 'Diskussion fortsetzen ({n} weitere Antworten)' },
      posted: 'Ihr Kommentar ist veröffentlicht. Sie können ihn bis {time} bearbeiten oder löschen.',
      postedPending: 'Ihr Kommentar wartet auf Freigabe. Sie können ihn bis {time} bearbeiten oder löschen.',
      pending: 'Wartet auf Freigabe',
      postedThisVisit: 'Ihr Kommentar ist veröffentlicht. Dieser Browser sperrt den Speicher eingebetteter Kommentare, daher können Sie ihn nur bis {time} und nur bei geöffneter Seite bearbeiten oder löschen.',
      postedPendingThisVisit: 'Ihr Kommentar wartet auf Freigabe. Dieser Browser sperrt den Speicher eingebetteter Kommentare, daher können Sie ihn nur bis {time} und nur bei geöffneter Seite bearbeiten oder löschen.',
      saved: 'Ihre Änderungen sind gespeichert.',
      deletedStatus: 'Ihr Kommentar wurde gelöscht.',
      errorNameRequired: 'Geben Sie Ihren Namen ein.',
      errorMessageRequired: 'Schreiben Sie einen Kommentar, bevor Sie ihn senden.',
      errorNetwork: 'Der Kommentar-Server ist nicht erreichbar. Prüfen Sie Ihre Verbindung und versuchen Sie es erneut.',
      errorRateLimited: 'Zu viele Anfragen. Warten Sie einen Moment und versuchen Sie es erneut.',
      retryAfter: { one: 'Versuchen Sie es in {n} Sekunde erneut.', other: 'Versuchen Sie es in {n} Sekunden erneut.' },
      errorEditExpired: 'Die Frist zum Bearbeiten dieses Kommentars ist abgelaufen.',
      errorHttp: 'Der Kommentar-Server konnte die Anfrage nicht bearbeiten (HTTP {status}).',
      errorUnexpected: 'Im Kommentar-Widget ist ein Fehler aufgetreten. Laden Sie die Seite neu und versuchen Sie es erneut.',
      embedFailed: 'Die Kommentare des Forums „{forum}“ können auf {origin} nicht angezeigt werden. Entweder lässt das Forum diese Seite nicht zu, oder der Kommentar-Server ist nicht erreichbar.'
    }
  };

  /* Return the language code from STRINGS that best matches `requested` (for example
     "de-AT" matches "de"), or "en". */
  function pickLanguage(requested) {
    var code = String(requested || '').toLowerCase();
    if (Object.prototype.hasOwnProperty.call(STRINGS, code)) return code;
    var base = code.split('-')[0];
    if (Object.prototype.hasOwnProperty.call(STRINGS, base)) return base;
    return 'en';
  }

  function fillPlaceholders(text, values) {
    return String(text).replace(/\{(\w+)\}/g, function (match, key) {
      return values && Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : match;
    });
  }

  /* Build a translator for one language: translate(key, values) returns the string, and
     translate.plural(key, n) returns the plural form for the number n. */
  function createTranslator(requested) {
    var language = pickLanguage(requested);
    var table = STRINGS[language];
    var english = STRINGS.en;
    var pluralRules = new Intl.PluralRules(language);
    var numberFormat = new Intl.NumberFormat(language);

    function lookup(key) {
      return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : english[key];
    }

    function translate(key, values) {
      var entry = lookup(key);
      return entry === undefined ? key : fillPlaceholders(entry, values);
    }

    translate.plural = function (key, n) {
      var entry = lookup(key) || {};
      var form = n === 0 && entry.zero ? entry.zero : entry[pluralRules.select(n)] || entry.other;
      return fillPlaceholders(form || key, { n: numberFormat.format(n) });
    };
    translate.language = language;
    return translate;
  }

  window.CommentsLocale = { strings: STRINGS, pickLanguage: pickLanguage, createTranslator: createTranslator };
})();
