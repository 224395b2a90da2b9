"""Browser-driving fixtures for interactive login tests (headless Chromium + chromedriver).

Placeholder: being written."""
