"""A minimal Django project serving django-oauth-toolkit, configured the way its documentation says.

``serve.py`` migrates a SQLite database in a temporary directory, creates a user and the applications
the interop suite logs in with, and serves the project with waitress on 127.0.0.1.  Nothing in DOT is
patched: every behaviour the suite relies on is a documented setting in ``settings.py``.
"""
