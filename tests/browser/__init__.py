"""Browser tests of the embeddable widget, count.js and the demo pages."""
